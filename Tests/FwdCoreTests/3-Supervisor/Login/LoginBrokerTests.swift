import Foundation
import Testing
@testable import FwdCore

/// The broker alone: which client a login question goes to, and where it goes when that client leaves.
@Suite struct LoginBrokerTests {
    /// Records what one asker was given.
    final class Client: @unchecked Sendable {
        let lock = NSLock()
        var questions: [LoginQuestion] = []
        var withdrawn: [Int] = []
        var alive = true
        func deliver(_ q: LoginQuestion) -> Bool { lock.withLock { if alive { questions.append(q) }; return alive } }
        func withdraw(_ id: Int) { lock.withLock { withdrawn.append(id) } }
    }

    final class Outcomes: @unchecked Sendable {
        let lock = NSLock()
        var all: [LoginBroker.Outcome] = []
        func add(_ o: LoginBroker.Outcome) { lock.withLock { all.append(o) } }
    }

    private static let prompt = LoginPrompt(id: 1, text: "alice@office's password: ", hint: .answer)

    private func register(_ broker: LoginBroker, _ client: Client, _ names: Set<String>, ready: Bool = true) -> Int {
        let id = broker.register(names: names, deliver: client.deliver, withdraw: client.withdraw)
        if ready { broker.activate(id) }
        return id
    }

    @Test func theNewestWatcherOfAnyTunnelOfTheHostIsAskedAndOnlyItCanAnswer() {
        let broker = LoginBroker()
        let old = Client(), new = Client(), other = Client()
        let oldID = register(broker, old, ["wiki"])
        let newID = register(broker, new, ["wiki", "db"])
        _ = register(broker, other, ["elsewhere"])
        let outcomes = Outcomes()
        let q = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        #expect(new.questions.map(\.id) == [q])
        #expect(new.questions.first?.text == Self.prompt.text && new.questions.first?.echo == false)
        #expect(old.questions.isEmpty && other.questions.isEmpty)
        #expect(outcomes.all == [.asked])
        broker.answer(from: oldID, id: q, "stolen")
        #expect(outcomes.all == [.asked], "another client answered")
        broker.answer(from: newID, id: q, "secret")
        #expect(outcomes.all == [.asked, .answer("secret")])
        #expect(broker.openQuestions.isEmpty)
    }

    @Test func nobodyToAskIsReportedAtOnce() {
        let broker = LoginBroker()
        let outcomes = Outcomes()
        _ = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        #expect(outcomes.all == [.nobody])
        #expect(broker.openQuestions.isEmpty)
    }

    @Test func aQuestionWaitsForItsWatcherToBeReady() {
        let broker = LoginBroker()
        let client = Client()
        let id = register(broker, client, ["wiki"], ready: false)
        let outcomes = Outcomes()
        _ = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        #expect(client.questions.isEmpty && outcomes.all.isEmpty)
        broker.activate(id)
        #expect(client.questions.count == 1 && outcomes.all == [.asked])
    }

    @Test func aWatcherThatLeavesHandsItsQuestionOnOrItIsCancelled() {
        let broker = LoginBroker()
        let first = Client(), second = Client()
        let firstID = register(broker, first, ["wiki"])
        let secondID = register(broker, second, ["wiki"])
        let outcomes = Outcomes()
        let q = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        #expect(second.questions.map(\.id) == [q])
        broker.unregister(secondID)
        #expect(first.questions.map(\.id) == [q], "not moved to the other watcher")
        #expect(outcomes.all == [.asked, .asked])
        broker.unregister(firstID)
        #expect(outcomes.all == [.asked, .asked, .cancelled])
        #expect(broker.openQuestions.isEmpty)
    }

    @Test func aClientGoneBeforeDeliveryIsSkipped() {
        let broker = LoginBroker()
        let live = Client(), gone = Client()
        _ = register(broker, live, ["wiki"])
        _ = register(broker, gone, ["wiki"])
        gone.alive = false
        let outcomes = Outcomes()
        _ = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        #expect(live.questions.count == 1 && outcomes.all == [.asked])
    }

    @Test func withdrawTakesTheQuestionOffItsTerminalAndCancelAndUnableAreHeard() {
        let broker = LoginBroker()
        let client = Client()
        let id = register(broker, client, ["wiki"])
        let outcomes = Outcomes()
        let q = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        broker.withdraw(q)
        #expect(client.withdrawn == [q])
        broker.answer(from: id, id: q, "late")
        #expect(outcomes.all == [.asked], "a withdrawn question was answered")
        let q2 = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        broker.answer(from: id, id: q2, nil)
        #expect(outcomes.all == [.asked, .asked, .cancelled])
        _ = broker.ask(Self.prompt, host: "office", tunnels: ["wiki"], reply: outcomes.add)
        broker.unable(from: id, id: q2 + 1)
        #expect(outcomes.all == [.asked, .asked, .cancelled, .asked, .nobody])
    }
}
