import Testing
@testable import FwdCore

/// `HostMachine`'s network-path bookkeeping alone (the machine's own path tests drive it through events).
@Suite struct PathCheckTests {
    @Test func oneCheckIsOutAtATimeAndTheLatestReasonWaitsForIt() {
        var path = PathCheck()
        path.wait(1)
        #expect(path.check("address added") == "address added")
        path.wait(nil)
        path.wait(2)
        #expect(path.check("route changed") == nil, "one round trip at a time")
        #expect(path.check("resumed") == nil)
        #expect(path.waiting == [1, 2], "a trigger nobody asked about waits for no line")
        path.returned()
        let answered = path.serverAnswered()
        #expect(answered.waiting == [1, 2])
        #expect(answered.next == "resumed", "the latest waiting reason is checked next")
        #expect(path.checking, "and that check is out now")
        #expect(path.check("address removed") == nil)
        path.returned()
        #expect(path.serverAnswered().next == "address removed")
        path.returned()
        #expect(path.serverAnswered() == ([], nil))
        #expect(!path.checking)
        #expect(path.check("resumed") == "resumed")
    }

    @Test func aRestartEndsWithTheMasterAndSaysWhyThenAllIsForgotten() {
        var path = PathCheck()
        path.wait(4)
        _ = path.check("resumed")
        _ = path.check("address added")
        path.wait(5)
        path.restart("10.0.0.5 left wlan0")
        #expect(path.isRestarting)
        let gone = path.masterGone()
        #expect(gone.restartReason == "10.0.0.5 left wlan0")
        #expect(gone.waiting == [4, 5])
        #expect(!path.isRestarting && !path.checking && path.queued == nil && path.waiting.isEmpty)
        #expect(path.check("resumed") == "resumed", "the next master starts with no check out")
        #expect(path.masterGone() == (nil, []), "a master that went by itself has no restart reason")
    }
}
