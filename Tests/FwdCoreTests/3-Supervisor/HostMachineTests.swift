import Foundation
import Testing
@testable import FwdCore
import FwdLab

/// The per-host state machine driven alone: no sockets, no processes, an injected clock (`now`) and no jitter.
@Suite struct HostMachineTests {
    private static func tunnel(_ name: String, _ specs: [String], kind: ForwardKind = .local, probe: ProbeKind? = nil) -> Tunnel {
        Tunnel(name: name, host: "office", forwards: specs.map { try! ForwardSpec.parse($0, kind: kind) }, probe: probe)
    }

    private static let wiki = tunnel("wiki", ["8080:wiki.lan:80"])
    private static let db = tunnel("db", ["5432:db.lan:5432"])

    /// A machine with its actions and the time, so a test reads as a sequence of events.
    private struct Drive {
        var machine: HostMachine
        var now = 0.0
        var token = 0

        init(settings: SupervisorOptions = SupervisorOptions()) {
            machine = HostMachine(host: "office", settings: .init(settings), backoff: settings.backoff, jitter: { 0 })
        }

        mutating func send(_ event: HostMachine.Event, at time: Double? = nil) -> [HostAction] {
            if let time { now = time }
            return machine.handle(event, now: now)
        }

        mutating func want(_ tunnels: [Tunnel], retry: Set<String> = []) -> [HostAction] {
            token += 1
            return send(.update(tunnels, retry: retry, token: token))
        }

        var g: Int { machine.generation }

        /// A network-path trigger (from netlink) with `verdict` for the live master.
        mutating func check(_ verdict: PathVerdict, mayRestore: Bool = true, token: Int?) -> [HostAction] {
            send(.pathCheck(verdict, trigger: "netlink", mayRestore: mayRestore, token: token))
        }

        /// Brings `tunnels` up: connect, ssh spawned, socket there, every forward added.
        mutating func up(_ tunnels: [Tunnel]) -> [HostAction] {
            _ = want(tunnels)
            _ = send(.spawned(generation: g, pid: 100))
            var actions = send(.masterReady(generation: g))
            while let add = actions.compactMap({ a -> (String, ForwardSpec)? in
                if case .addForward(_, let t, let f) = a { return (t, f) }
                return nil
            }).first {
                actions.removeAll { $0 == .addForward(generation: g, tunnel: add.0, add.1) }
                actions += send(.forwardAdded(generation: g, tunnel: add.0, add.1, .added(allocatedPort: nil)))
            }
            return actions
        }
    }

    private static func states(_ actions: [HostAction]) -> [String: TunnelState] {
        var result: [String: TunnelState] = [:]
        for case .record(.state(let t, let s, _, _, _)) in actions { result[t] = s }
        return result
    }

    private static func messages(_ actions: [HostAction]) -> [String] {
        actions.compactMap { action -> String? in
            if case .record(.state(_, _, _, _, let m)) = action { return m }
            return nil
        }
    }

    private static func probeJobs(_ actions: [HostAction]) -> [Tunnel] {
        actions.flatMap { action -> [Tunnel] in
            if case .probe(_, _, let t) = action { return t }
            return []
        }
    }

    private static func waits(_ actions: [HostAction]) -> [(delay: Double, pollServer: Bool)] {
        actions.compactMap { action -> (delay: Double, pollServer: Bool)? in
            if case .waitToReconnect(_, let d, _, _, let p) = action { return (d, p) }
            return nil
        }
    }

    private static func probed(_ t: Tunnel, _ outcome: ProbeOutcome, ms: Double = 3) -> HostMachine.ProbedTunnel {
        .init(tunnel: t, results: Dictionary(uniqueKeysWithValues: t.forwards.indices.map { ($0, ProbeResult(outcome: outcome, latencyMs: ms)) }))
    }

    @Test func firstTunnelConnectsOnceAndReportsWhenTheRequestHasTakenEffect() {
        var d = Drive()
        let actions = d.want([Self.wiki])
        #expect(Self.states(actions) == ["wiki": .starting])
        #expect(actions.contains(.spawnMaster(generation: 1)))
        #expect(actions.last == .finished(token: 1), "the request is done once the connect is under way")
        #expect(d.machine.master == .connecting(pid: nil))
        // A second tunnel while connecting waits for the same master: no second spawn.
        let second = d.want([Self.wiki, Self.db])
        #expect(!second.contains { if case .spawnMaster = $0 { true } else { false } })
        #expect(Self.messages(second) == ["waiting for the connection to office"])
    }

    @Test func readyAddsEveryForwardThenProbesEachTunnel() {
        var d = Drive()
        _ = d.want([Self.wiki, Self.db])
        let spawned = d.send(.spawned(generation: 1, pid: 42))
        #expect(Self.messages(spawned).allSatisfy { $0 == "connecting to office (ssh pid 42)" })
        let ready = d.send(.masterReady(generation: 1), at: 1)
        #expect(ready.filter { if case .addForward = $0 { true } else { false } }.count == 2)
        #expect(ready.contains(.schedule(.probeTick(generation: 1), after: 2)))
        let added = d.send(.forwardAdded(generation: 1, tunnel: "wiki", Self.wiki.forwards[0], .added(allocatedPort: nil)))
        #expect(Self.probeJobs(added) == [Self.wiki], "a tunnel is probed as soon as its own forwards are live")
        let up = d.send(.probed(generation: 1, [Self.probed(Self.wiki, .up)]))
        #expect(Self.states(up) == ["wiki": .up])
        #expect(up.contains(.record(.probe(tunnel: "wiki", [ForwardStatus(kind: .local, spec: Self.wiki.forwards[0].sshArgument, probe: .tcp, probeMs: 3, ok: true)]))))
    }

    @Test func warmUpdateFinishesOnlyAfterTheNewTunnelIsProbed() {
        var d = Drive()
        _ = d.up([Self.wiki])
        _ = d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up)]))
        let update = d.want([Self.wiki, Self.db])
        #expect(update == [.addForward(generation: d.g, tunnel: "db", Self.db.forwards[0])], "no finish yet, no reconnect")
        let added = d.send(.forwardAdded(generation: d.g, tunnel: "db", Self.db.forwards[0], .added(allocatedPort: nil)))
        #expect(!added.contains(.finished(token: d.token)))
        let probed = d.send(.probed(generation: d.g, [Self.probed(Self.db, .up)]))
        #expect(probed.last == .finished(token: d.token))
    }

    @Test func changedTunnelIsCancelledExactlyAsSentAndAddedAgain() {
        var d = Drive()
        _ = d.up([Self.wiki])
        let moved = Self.tunnel("wiki", ["8081:wiki.lan:80"])
        let actions = d.want([moved])
        #expect(actions.first == .cancelForward(Self.wiki.forwards[0]))
        #expect(actions.contains(.addForward(generation: d.g, tunnel: "wiki", moved.forwards[0])))
    }

    @Test func lastTunnelDownStopsTheMasterAndStaleEventsAreIgnored() {
        var d = Drive()
        _ = d.up([Self.wiki])
        let old = d.g
        let actions = d.want([])
        #expect(Self.states(actions) == ["wiki": .down])
        #expect(actions.contains(.stopMaster(reason: "no tunnel on office is wanted")))
        #expect(d.machine.isIdle)
        // The old master's exit and its probe tick arrive late: nothing happens.
        #expect(d.send(.masterExited(generation: old, status: 0, stderr: "")) == [])
        #expect(d.send(.probeTick(generation: old)) == [])
    }

    @Test func lostConnectionRetriesWithGrowingBackoffAndPollsTheServer() {
        var d = Drive()
        _ = d.up([Self.wiki])
        let lost = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection to a.lab closed by remote host.\n"), at: 10)
        #expect(Self.states(lost) == ["wiki": .starting])
        #expect(lost.contains(.record(.restart(tunnel: "wiki", reason: "Connection to a.lab closed by remote host."))))
        #expect(Self.waits(lost).map(\.delay) == [0.5])
        #expect(Self.waits(lost).first?.pollServer == true, "the server's port is polled to reconnect the moment it is back")
        #expect(d.machine.master == .waiting)
        // The connect fails again and again: 1 s, 2 s, … capped at 30 s.
        var delays: [Double] = []
        for i in 0..<8 {
            _ = d.send(.connectDue(generation: d.g), at: 11 + Double(i))
            _ = d.send(.spawned(generation: d.g, pid: 200))
            let failed = d.send(.masterExited(generation: d.g, status: 255, stderr: "ssh: connect to host a.lab port 22: Connection refused\n"))
            delays += Self.waits(failed).map(\.delay)
        }
        #expect(delays == [1, 2, 4, 8, 16, 30, 30, 30])
        // An outage's age goes with the wait, so the executor can ease its polling off.
        let outage = d.send(.connectDue(generation: d.g), at: 100)
        _ = outage
        _ = d.send(.spawned(generation: d.g, pid: 201))
        let late = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection refused"), at: 101)
        #expect(late.contains { if case .waitToReconnect(_, _, 30, 91, true) = $0 { true } else { false } })
    }

    /// Each failed attempt is recorded with its count and the time to the next one, keeps its reason on the rows
    /// while the next attempt runs, and counts as a restart; a master that gets up starts the count over.
    @Test func failedAttemptsAreCountedWithTheirReasonAndNextTry() {
        var d = Drive()
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: d.g, pid: 7))
        let refused = "ssh: connect to host a.lab port 22: Connection refused"
        let first = d.send(.masterExited(generation: d.g, status: 255, stderr: refused + "\n"), at: 0.3)
        #expect(first.contains(.record(.state(tunnel: "wiki", .starting, pid: nil, error: refused, message: "attempt 1 failed; next try in 0.5 s"))))
        #expect(first.contains(.record(.retrying(tunnel: "wiki", attempts: 1, retryIn: 0.5))))
        #expect(first.contains(.record(.restart(tunnel: "wiki", reason: refused))), "RESTARTS counts attempts")
        // A tunnel asked for meanwhile (within a second of the attempt) learns the reason and the time left.
        let newcomer = d.send(.update([Self.wiki, Self.db], retry: ["db"], token: 99), at: 0.5)
        #expect(newcomer.contains(.record(.state(tunnel: "db", .starting, pid: nil, error: refused, message: "waiting for the connection to office"))))
        #expect(newcomer.contains { if case .record(.retrying("db", 1, let left?)) = $0 { abs(left - 0.3) < 1e-9 } else { false } })
        _ = d.send(.connectDue(generation: d.g), at: 1.5)
        let retrying = d.send(.spawned(generation: d.g, pid: 8))
        #expect(retrying.contains(.record(.state(tunnel: "wiki", .starting, pid: 8, error: refused, message: "connecting to office (ssh pid 8)"))),
                "the reason stays while the next attempt runs")
        let second = d.send(.masterExited(generation: d.g, status: 255, stderr: refused), at: 2)
        #expect(second.contains(.record(.retrying(tunnel: "wiki", attempts: 2, retryIn: 1))))
        _ = d.send(.connectDue(generation: d.g), at: 3)
        _ = d.send(.spawned(generation: d.g, pid: 9))
        _ = d.send(.masterReady(generation: d.g))
        #expect(d.machine.attempts == 0)
    }

    /// Asking for a tunnel again while its host waits out a backoff tries at once (at most once a second), so
    /// the request ends with a fresh outcome; the backoff keeps growing.
    @Test func askingAgainWhileWaitingTriesAtOnceAtMostOnceASecond() {
        var d = Drive()
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: d.g, pid: 7))
        _ = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection refused"), at: 0.2)
        #expect(!d.want([Self.wiki], retry: ["wiki"]).contains { if case .spawnMaster = $0 { true } else { false } }, "within a second of the last")
        d.now = 1.5
        let again = d.want([Self.wiki], retry: ["wiki"])
        #expect(again.contains(.spawnMaster(generation: d.g)))
        #expect(again.contains(.record(.retrying(tunnel: "wiki", attempts: 1, retryIn: nil))), "the old retry time is no outcome of this request")
        _ = d.send(.spawned(generation: d.g, pid: 8))
        let failed = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection refused"), at: 1.6)
        #expect(Self.waits(failed).map(\.delay) == [1])
        // A request that does not name it (a reload) waits for the timer.
        d.now = 5
        #expect(!d.want([Self.wiki]).contains { if case .spawnMaster = $0 { true } else { false } })
    }

    /// `max_attempts`: after that many failed attempts in a row the host gives up, in the last attempt's words,
    /// until the user asks again.
    @Test func aHostGivesUpAfterMaxAttempts() {
        var d = Drive()
        var settings = HostMachine.Settings(SupervisorOptions())
        settings.maxAttempts = 2
        d.machine = HostMachine(host: "office", settings: settings, backoff: Backoff(), jitter: { 0 })
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: d.g, pid: 7))
        let refused = "ssh: connect to host a.lab port 22: Connection refused"
        #expect(Self.waits(d.send(.masterExited(generation: d.g, status: 255, stderr: refused), at: 1)).count == 1)
        _ = d.send(.connectDue(generation: d.g), at: 2)
        _ = d.send(.spawned(generation: d.g, pid: 8))
        let last = d.send(.masterExited(generation: d.g, status: 255, stderr: refused), at: 3)
        #expect(Self.waits(last).isEmpty)
        #expect(Self.states(last) == ["wiki": .failed])
        let advice = "fwd gave up after 2 failed attempts (max_attempts in [hosts.office]); `fwd up wiki` tries again"
        #expect(last.contains { if case .record(.state("wiki", .failed, _, refused + " — " + advice, _)) = $0 { true } else { false } })
        // Asked again (past the 5 s rate limit of a failure fwd does not retry): a fresh count.
        d.now = 10
        #expect(d.want([Self.wiki], retry: ["wiki"]).contains(.spawnMaster(generation: d.g)))
        #expect(d.machine.attempts == 0)
    }

    @Test func backoffResetsAfterAStableConnection() {
        var d = Drive()
        _ = d.up([Self.wiki])
        _ = d.send(.masterExited(generation: d.g, status: 255, stderr: "Broken pipe"), at: 1)
        _ = d.send(.connectDue(generation: d.g), at: 2)
        _ = d.send(.spawned(generation: d.g, pid: 3))
        _ = d.send(.masterReady(generation: d.g), at: 2)
        // Up for longer than the stable period (60 s): the next loss starts again at the base delay.
        let lost = d.send(.masterExited(generation: d.g, status: 255, stderr: "Broken pipe"), at: 70)
        #expect(Self.waits(lost).map(\.delay) == [0.5])
    }

    @Test func fatalFailureIsNotRetriedUntilTheUserAsksAndThenAtMostEveryFiveSeconds() {
        var d = Drive()
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: 1, pid: 9))
        let denied = d.send(.masterExited(generation: 1, status: 255, stderr: "user@a.lab: Permission denied (publickey).\n"), at: 1)
        #expect(Self.states(denied) == ["wiki": .failed])
        #expect(Self.waits(denied).isEmpty, "no reconnect after an authentication failure")
        #expect(d.machine.master == .failed(SSHFailure.classify(stderr: "user@a.lab: Permission denied (publickey).", status: 255)))
        // Another tunnel wanted on the host, not named by the user: still failed, no attempt.
        let other = d.want([Self.wiki, Self.db])
        #expect(!other.contains { if case .spawnMaster = $0 { true } else { false } })
        #expect(Self.states(other) == ["wiki": .failed, "db": .failed])
        // The user asks again within 5 s of the last attempt: refused; after 5 s: one new attempt.
        d.now = 3
        #expect(!d.want([Self.wiki], retry: ["wiki"]).contains(.spawnMaster(generation: d.g + 1)))
        d.now = 6.5
        #expect(d.want([Self.wiki], retry: ["wiki"]).contains(.spawnMaster(generation: d.g)))
    }

    @Test func socketHeldByAForeignMasterWaitsWithoutPollingTheServer() {
        var d = Drive()
        _ = d.want([Self.wiki])
        let busy = SSHFailure(failureClass: .retry, evidence: "an ssh master fwd did not start already serves …", advice: "end that ssh session")
        let actions = d.send(.spawnFailed(generation: 1, busy))
        #expect(Self.messages(actions) == ["attempt 1 failed; next try in 0.5 s"])
        #expect(actions.contains(.record(.retrying(tunnel: "wiki", attempts: 1, retryIn: 0.5))), "`fwd up` learns the outcome at once")
        #expect(Self.waits(actions).map(\.pollServer) == [false])
    }

    @Test func takenLocalPortIsCheckedAgainUntilItFreesAndCancelsWhatItHadAdded() {
        var d = Drive()
        let two = Self.tunnel("two", ["8080:a:1", "8081:b:2"])
        _ = d.want([two, Self.db])
        _ = d.send(.spawned(generation: 1, pid: 5))
        _ = d.send(.masterReady(generation: 1))
        _ = d.send(.forwardAdded(generation: 1, tunnel: "two", two.forwards[0], .added(allocatedPort: nil)))
        let clash = d.send(.forwardAdded(generation: 1, tunnel: "two", two.forwards[1],
                                         .refused("forwarding request failed: Port forwarding failed", holder: "pid 77 (nc)")))
        #expect(clash.first == .cancelForward(two.forwards[0]))
        #expect(Self.states(clash) == ["two": .starting])
        #expect(clash.contains { if case .record(.state("two", .starting, _, "local port 8081 is already in use (held by pid 77 (nc)): stop that program or change the port in two's local forward; fwd takes it once it is free", "the port is in use (check 1); checking again in 0.5 s")) = $0 { true } else { false } })
        #expect(clash.contains(.record(.retrying(tunnel: "two", attempts: 1, retryIn: 0.5))))
        #expect(clash.contains(.schedule(.retryForwards(generation: 1, tunnel: "two"), after: 0.5)))
        let fine = d.send(.forwardAdded(generation: 1, tunnel: "db", Self.db.forwards[0], .added(allocatedPort: nil)))
        #expect(Self.probeJobs(fine) == [Self.db], "the other tunnel is unaffected")
        // Still held at the next checks: the checks slow down to every 5 s, the holder named each time afresh.
        var delays: [Double] = []
        for holder in ["pid 77 (nc)", "pid 78 (nc)", "pid 78 (nc)", "pid 78 (nc)", "pid 78 (nc)"] {
            // The taken port goes first: the other forward does not go up and down with each check.
            let again = d.send(.retryForwards(generation: 1, tunnel: "two"))
            #expect(again == [.addForward(generation: 1, tunnel: "two", two.forwards[1])])
            let held = d.send(.forwardAdded(generation: 1, tunnel: "two", two.forwards[1],
                                            .refused("forwarding request failed: Port forwarding failed", holder: holder)))
            delays += held.compactMap { if case .schedule(.retryForwards, let after) = $0 { after } else { nil } }
        }
        #expect(delays == [1, 2, 4, 5, 5])
        // The program exited: the next check takes the port, then the other forward, and the tunnel comes up.
        _ = d.send(.retryForwards(generation: 1, tunnel: "two"))
        let freed = d.send(.forwardAdded(generation: 1, tunnel: "two", two.forwards[1], .added(allocatedPort: nil)))
        #expect(freed.contains(.addForward(generation: 1, tunnel: "two", two.forwards[0])))
        let complete = d.send(.forwardAdded(generation: 1, tunnel: "two", two.forwards[0], .added(allocatedPort: nil)))
        #expect(Self.probeJobs(complete) == [two])
    }

    @Test func heldRemoteListenerIsRetriedWithGrowingDelaysThenFailsWithAdvice() {
        var settings = SupervisorOptions()
        settings.remoteListenerRetries = 2
        var d = Drive(settings: settings)
        let r = Self.tunnel("expose", ["8022:localhost:22"], kind: .remote)
        _ = d.want([r])
        _ = d.send(.spawned(generation: 1, pid: 5))
        _ = d.send(.masterReady(generation: 1))
        let refusal = HostMachine.MuxOutcome.refused("forwarding request failed: remote port forwarding failed for listen port 8022", holder: nil)
        var delays: [Double] = []
        for _ in 0..<2 {
            let actions = d.send(.forwardAdded(generation: 1, tunnel: "expose", r.forwards[0], refusal))
            #expect(Self.states(actions) == ["expose": .starting])
            for case .schedule(.retryForwards(1, "expose"), let after) in actions { delays.append(after) }
            #expect(d.send(.retryForwards(generation: 1, tunnel: "expose")) == [.addForward(generation: 1, tunnel: "expose", r.forwards[0])])
        }
        #expect(delays == [1, 2])
        let gaveUp = d.send(.forwardAdded(generation: 1, tunnel: "expose", r.forwards[0], refusal))
        #expect(Self.states(gaveUp) == ["expose": .failed])
        #expect(Self.messages(gaveUp) == ["gave up after 2 retries"])
        // `fwd up expose` asks again: the count starts over.
        let again = d.want([r], retry: ["expose"])
        #expect(again.contains(.addForward(generation: 1, tunnel: "expose", r.forwards[0])))
    }

    @Test func theWordsRecordedForAFailedTunnelOrLoginAreExact() {
        func errors(_ actions: [HostAction]) -> [String] {
            actions.compactMap { if case .record(.state(_, _, _, let e?, _)) = $0 { e } else { nil } }
        }
        // A -R listener the server keeps: each retry says when, and giving up says what to check.
        var settings = SupervisorOptions()
        settings.remoteListenerRetries = 1
        var r = Drive(settings: settings)
        let expose = Self.tunnel("expose", ["8022:localhost:22"], kind: .remote)
        _ = r.up([expose])
        let refusal = HostMachine.MuxOutcome.refused("forwarding request failed: remote port forwarding failed for listen port 8022", holder: nil)
        _ = r.send(.probed(generation: r.g, [Self.probed(expose, .listenerDown("nothing listens"))]))
        let retry = r.send(.forwardAdded(generation: r.g, tunnel: "expose", expose.forwards[0], refusal))
        #expect(Self.messages(retry) == ["server still holds the listener; retry 1 in 1.0 s"])
        _ = r.send(.retryForwards(generation: r.g, tunnel: "expose"))
        let gaveUp = r.send(.forwardAdded(generation: r.g, tunnel: "expose", expose.forwards[0], refusal))
        #expect(errors(gaveUp) == ["forwarding request failed: remote port forwarding failed for listen port 8022 — the server kept refusing; check what listens on that port on the server (or lower its ClientAliveInterval), then `fwd up expose`"])
        // A login no terminal can answer, and answers the server refused.
        var blind = Drive()
        _ = blind.want([Self.wiki, Self.db])
        _ = blind.send(.spawned(generation: blind.g, pid: 100))
        #expect(errors(blind.send(.loginImpossible(generation: blind.g, .hostKey))) == [
            "logging in to office needs a decision on the server's host key and no terminal is there to ask — run `fwd up db wiki` on a terminal to check and accept the key, or add it to known_hosts first (`ssh office` once)",
            "logging in to office needs a decision on the server's host key and no terminal is there to ask — run `fwd up db wiki` on a terminal to check and accept the key, or add it to known_hosts first (`ssh office` once)"])
        var typed = Drive()
        _ = typed.want([Self.wiki])
        _ = typed.send(.spawned(generation: typed.g, pid: 100))
        _ = typed.send(.loginAsked(generation: typed.g, .keyPassphrase))
        #expect(errors(typed.send(.masterExited(generation: typed.g, status: 255, stderr: "u@a.lab: Permission denied (publickey).\n"), at: 1)) == [
            "u@a.lab: Permission denied (publickey). — the server refused a key passphrase typed at the terminal; fwd does not try again by itself: `fwd up wiki` to try once more"])
        // Logging in again needs a person.
        var cancelled = Drive()
        _ = cancelled.want([Self.wiki])
        _ = cancelled.send(.spawned(generation: cancelled.g, pid: 100))
        #expect(errors(cancelled.send(.loginCancelled(generation: cancelled.g))) == [
            "the login to office was cancelled at the terminal; logging in again needs a person: run `fwd up wiki` on a terminal (a key in ssh-agent lets fwd reconnect by itself)"])
    }

    @Test func aStateThatDoesNotChangeIsNotWrittenAgain() {
        var d = Drive()
        _ = d.up([Self.wiki])
        #expect(Self.states(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up)]))) == ["wiki": .up])
        // The next round finds the same: its probe results are recorded, the unchanged state is not.
        _ = d.send(.probeTick(generation: d.g))
        let again = d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up, ms: 4)]))
        #expect(Self.states(again).isEmpty)
        #expect(again.contains { if case .record(.probe("wiki", _)) = $0 { true } else { false } })
    }

    @Test func probeResultsAreWrittenWhenTheyDifferFromTheLastWritten() {
        func probeWrites(_ actions: [HostAction]) -> [[ForwardStatus]] {
            actions.compactMap { if case .record(.probe("wiki", let statuses)) = $0 { statuses } else { nil } }
        }
        var d = Drive()
        _ = d.up([Self.wiki])
        #expect(probeWrites(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up, ms: 0)]))).count == 1)
        // A round that finds exactly the same (probe = "none": up, 0 ms) writes nothing.
        _ = d.send(.probeTick(generation: d.g))
        #expect(probeWrites(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up, ms: 0)]))).isEmpty)
        // A new latency, and a failure, are written at once.
        _ = d.send(.probeTick(generation: d.g))
        #expect(probeWrites(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up, ms: 1.5)]))).map { $0.map(\.probeMs) } == [[1.5]])
        _ = d.send(.probeTick(generation: d.g))
        let failed = d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .targetDown("refused"), ms: 1.5)]))
        #expect(probeWrites(failed).map { $0.map(\.ok) } == [[false]])
        // Once the tunnel's definition changes, its next results are written whatever they are.
        let moved = Self.tunnel("wiki", ["8081:wiki.lan:80"])
        _ = d.want([moved])
        _ = d.send(.forwardAdded(generation: d.g, tunnel: "wiki", moved.forwards[0], .added(allocatedPort: nil)))
        #expect(probeWrites(d.send(.probed(generation: d.g, [Self.probed(moved, .up, ms: 0)]))).count == 1)
        _ = d.want([Self.wiki])
        _ = d.send(.forwardAdded(generation: d.g, tunnel: "wiki", Self.wiki.forwards[0], .added(allocatedPort: nil)))
        #expect(probeWrites(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up, ms: 0)]))).count == 1,
                "results equal to ones written before the change are written again")
    }

    @Test func targetDownIsDegradedAndTheMasterStays() {
        var d = Drive()
        _ = d.up([Self.wiki])
        let actions = d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .targetDown("127.0.0.1:8080 closed the connection at once"))]))
        #expect(Self.states(actions) == ["wiki": .degraded])
        #expect(!actions.contains(.terminateMaster))
    }

    @Test func stalledProbesRestartTheMasterOnTheThirdSilence() {
        var d = Drive()
        #expect(Self.probeJobs(d.up([Self.wiki])) == [Self.wiki])
        var seen: [[HostAction]] = []
        for round in 0..<3 {
            if round > 0 { #expect(Self.probeJobs(d.send(.probeTick(generation: d.g))) == [Self.wiki]) }
            seen.append(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .noAnswer("no answer within 2 s"))])))
        }
        #expect(Self.states(seen[0]) == ["wiki": .degraded] && Self.states(seen[1]) == ["wiki": .degraded])
        #expect(!seen[1].contains(.terminateMaster))
        #expect(seen[2].contains(.terminateMaster))
        #expect(Self.messages(seen[2]) == ["3 probes got no answer: the connection looks stalled; reconnecting"])
    }

    @Test func probesDoNotOverlapAndAListenerThatVanishedIsAddedAgain() {
        var d = Drive()
        _ = d.up([Self.wiki])
        // The first probe is still out: a tick does not start another for the same tunnel.
        #expect(Self.probeJobs(d.send(.probeTick(generation: d.g))).isEmpty)
        let gone = d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .listenerDown("nothing listens on 127.0.0.1:8080"))]))
        #expect(Self.states(gone) == ["wiki": .starting])
        #expect(gone.contains(.addForward(generation: d.g, tunnel: "wiki", Self.wiki.forwards[0])))
    }

    @Test func checkWaitsForTheProbesItAskedFor() {
        var d = Drive()
        _ = d.up([Self.wiki])
        _ = d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up)]))
        let check = d.send(.check(nil, token: 99))
        #expect(Self.probeJobs(check) == [Self.wiki])
        #expect(!check.contains(.finished(token: 99)))
        #expect(d.send(.probed(generation: d.g, [Self.probed(Self.wiki, .up)])).contains(.finished(token: 99)))
        // With no master, a check is done at once.
        var idle = Drive()
        #expect(idle.send(.check(nil, token: 5)) == [.finished(token: 5)])
    }

    @Test func stopTakesEveryTunnelDownAndTheMasterWithIt() {
        var d = Drive()
        _ = d.up([Self.wiki, Self.db])
        let actions = d.send(.stop(token: 7))
        #expect(Self.states(actions) == ["wiki": .down, "db": .down])
        #expect(Self.messages(actions).allSatisfy { $0 == "taken down: the supervisor is stopping" })
        #expect(actions.contains(.stopMaster(reason: "no tunnel on office is wanted")))
        #expect(actions.last == .finished(token: 7))
        #expect(d.machine.isIdle)
    }

    @Test func allocatedRemotePortIsRecorded() {
        var d = Drive()
        let r = Self.tunnel("laptop", ["0:localhost:3000"], kind: .remote)
        _ = d.want([r])
        _ = d.send(.spawned(generation: 1, pid: 5))
        _ = d.send(.masterReady(generation: 1))
        let actions = d.send(.forwardAdded(generation: 1, tunnel: "laptop", r.forwards[0], .added(allocatedPort: 35733)))
        #expect(actions.contains(.record(.allocatedPort(tunnel: "laptop", spec: r.forwards[0].sshArgument, port: 35733))))
        #expect(d.machine.forwards.allocated[r.forwards[0]] == 35733)
    }

    @Test func aRemoteListenerTheServerJustConfirmedIsNotProbedThroughAgainUntilTheNextRound() {
        var d = Drive()
        let r = Self.tunnel("laptop", ["8022:localhost:22"], kind: .remote)
        _ = d.want([r])
        _ = d.send(.spawned(generation: 1, pid: 5))
        _ = d.send(.masterReady(generation: 1))
        let first = d.send(.forwardAdded(generation: 1, tunnel: "laptop", r.forwards[0], .added(allocatedPort: nil, ms: 0.4)))
        #expect(Self.jobs(first).map(\.listenerConfirmedMs) == [0.4], "the first probe takes the server's confirmation")
        _ = d.send(.probed(generation: 1, [HostMachine.ProbedTunnel(tunnel: r, results: [0: ProbeResult(outcome: .up, latencyMs: 0.4)])]))
        let next = d.send(.probeTick(generation: 1))
        #expect(Self.jobs(next).count == 1)
        #expect(Self.jobs(next).map(\.listenerConfirmedMs) == [nil], "later rounds go end to end through the listener")
    }

    @Test func askingForALiveTunnelAgainProbesItBeforeTheRequestEnds() {
        var d = Drive()
        _ = d.up([Self.wiki])
        _ = d.send(.probed(generation: d.g, [HostMachine.ProbedTunnel(tunnel: Self.wiki, results: [0: ProbeResult(outcome: .targetDown("refused"), latencyMs: 1)])]))
        let token = 77
        let again = d.machine.handle(.update([Self.wiki], retry: ["wiki"], token: token), now: 10)
        #expect(Self.probeJobs(again) == [Self.wiki], "a fresh verdict, not the one recorded before")
        #expect(!again.contains(.finished(token: token)))
        let done = d.send(.probed(generation: d.g, [HostMachine.ProbedTunnel(tunnel: Self.wiki, results: [0: ProbeResult(outcome: .up, latencyMs: 1)])]))
        #expect(done.contains(.finished(token: token)))
    }

    private static func jobs(_ actions: [HostAction]) -> [HostMachine.ProbeJob] {
        actions.flatMap { action -> [HostMachine.ProbeJob] in
            if case .probe(_, let jobs, _) = action { return jobs }
            return []
        }
    }

    // MARK: logins that need a person (issue 11)

    private static func errors(_ actions: [HostAction]) -> [String] {
        actions.compactMap { action -> String? in
            if case .record(.state(_, _, _, let e, _)) = action { return e }
            return nil
        }
    }

    /// Logs in with a question answered at a terminal, then adds the forwards.
    private static func upInteractively(_ d: inout Drive, _ tunnels: [Tunnel], kind: LoginPromptKind = .password) {
        _ = d.want(tunnels, retry: Set(tunnels.map(\.name)))
        _ = d.send(.spawned(generation: d.g, pid: 100))
        _ = d.send(.loginAsked(generation: d.g, kind))
        var actions = d.send(.masterReady(generation: d.g))
        while let add = actions.compactMap({ a -> (String, ForwardSpec)? in
            if case .addForward(_, let t, let f) = a { return (t, f) }
            return nil
        }).first {
            actions.removeAll { $0 == .addForward(generation: d.g, tunnel: add.0, add.1) }
            actions += d.send(.forwardAdded(generation: d.g, tunnel: add.0, add.1, .added(allocatedPort: nil)))
        }
    }

    @Test func aQuestionAtTheTerminalIsShownInTheTunnelsStateAndMarksTheLoginInteractive() {
        var d = Drive()
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: d.g, pid: 100))
        let asked = d.send(.loginAsked(generation: d.g, .password))
        #expect(Self.states(asked) == ["wiki": .starting])
        #expect(Self.messages(asked) == ["waiting for a password, asked at the terminal"])
        #expect(d.machine.interactive == nil, "not interactive before the login completes")
        _ = d.send(.masterReady(generation: d.g))
        #expect(d.machine.interactive == .password)
    }

    @Test func aDropAfterAnInteractiveLoginGoesToNeedsAuthAndMakesNoLoginAttempt() {
        var d = Drive()
        Self.upInteractively(&d, [Self.wiki, Self.db])
        let lost = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection to a.lab closed by remote host.\n"), at: 50)
        #expect(Self.states(lost) == ["wiki": .needsAuth, "db": .needsAuth])
        #expect(Self.waits(lost).isEmpty, "a reconnect was scheduled")
        #expect(!lost.contains { if case .spawnMaster = $0 { true } else { false } })
        #expect(Self.errors(lost).contains { $0.contains("run `fwd up wiki` on a terminal") })
        #expect(Self.errors(lost).contains { $0.contains("run `fwd up db` on a terminal") })
        // Probes, timers and a config reload change nothing: zero login attempts until the user acts.
        #expect(d.send(.probeTick(generation: d.g), at: 60).isEmpty)
        let reload = d.want([Self.wiki, Self.db])
        #expect(Self.states(reload).isEmpty, "the recorded needs-auth stands: nothing new to write")
        #expect(!reload.contains { if case .spawnMaster = $0 { true } else { false } })
        if case .needsAuth = d.machine.master {} else { Issue.record("the host left needs-auth: \(d.machine.master)") }
        // `fwd up wiki` logs in again at once (no server refused anything, so no rate limit applies).
        let again = d.want([Self.wiki, Self.db], retry: ["wiki"])
        #expect(again.contains(.spawnMaster(generation: d.g)))
    }

    @Test func aDropAfterALoginWithoutAPersonStillReconnectsByItself() {
        var d = Drive()
        _ = d.up([Self.wiki])
        let lost = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection to a.lab closed by remote host.\n"), at: 10)
        #expect(Self.states(lost) == ["wiki": .starting])
        #expect(Self.waits(lost).count == 1)
    }

    @Test func aLoginWithoutAPersonAfterNeedsAuthRestoresAutomaticReconnects() {
        var d = Drive()
        Self.upInteractively(&d, [Self.wiki])
        _ = d.send(.masterExited(generation: d.g, status: 255, stderr: "Broken pipe"), at: 10)
        _ = d.want([Self.wiki], retry: ["wiki"])
        _ = d.send(.spawned(generation: d.g, pid: 101))
        _ = d.send(.masterReady(generation: d.g))  // the key is in the agent now: no question
        #expect(d.machine.interactive == nil)
        let lost = d.send(.masterExited(generation: d.g, status: 255, stderr: "Broken pipe"), at: 100)
        #expect(Self.states(lost) == ["wiki": .starting])
        #expect(Self.waits(lost).count == 1)
    }

    @Test func noTerminalToAskFailsAtOnceWithWhatIsNeededAndIsNotRetried() {
        for (kind, words) in [(LoginPromptKind.password, "ssh-agent"), (.keyPassphrase, "ssh-add"), (.hostKey, "known_hosts"),
                              (.keyboardInteractive, "answer the server's question")] {
            var d = Drive()
            _ = d.want([Self.wiki])
            _ = d.send(.spawned(generation: d.g, pid: 100))
            let failed = d.send(.loginImpossible(generation: d.g, kind))
            #expect(Self.states(failed) == ["wiki": .failed])
            let error = Self.errors(failed).first ?? ""
            #expect(error.contains("needs \(kind.noun) and no terminal is there to ask"), "\(error)")
            #expect(error.contains("`fwd up wiki` on a terminal"), "\(error)")
            #expect(error.contains(words), "\(error)")
            // The refused ssh exits: nothing is retried.
            let exit = d.send(.masterExited(generation: d.g, status: 143, stderr: ""), at: 1)
            #expect(exit.isEmpty)
            #expect(Self.states(d.want([Self.wiki])) == ["wiki": .failed])
        }
    }

    @Test func answersRefusedWithinTheOneConnectionFailWithoutAnotherAttempt() {
        var d = Drive()
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: d.g, pid: 100))
        _ = d.send(.loginAsked(generation: d.g, .password))
        let denied = d.send(.masterExited(generation: d.g, status: 255, stderr: "u@a.lab: Permission denied (publickey,password).\n"), at: 2)
        #expect(Self.states(denied) == ["wiki": .failed])
        #expect(Self.waits(denied).isEmpty)
        let error = Self.errors(denied).first ?? ""
        #expect(error.contains("the server refused a password typed at the terminal"), "\(error)")
        #expect(!error.contains("agent"), "\(error)")
        // The fatal-failure rule holds: a retry only when asked, at most every 5 s.
        d.now = 3
        #expect(!d.want([Self.wiki], retry: ["wiki"]).contains { if case .spawnMaster = $0 { true } else { false } })
        d.now = 6
        #expect(d.want([Self.wiki], retry: ["wiki"]).contains(.spawnMaster(generation: d.g)))
    }

    @Test func cancelAtThePromptWaitsForTheUserAndAStaleCancelIsIgnored() {
        var d = Drive()
        _ = d.want([Self.wiki])
        _ = d.send(.spawned(generation: d.g, pid: 100))
        _ = d.send(.loginAsked(generation: d.g, .keyboardInteractive))
        let cancelled = d.send(.loginCancelled(generation: d.g))
        #expect(Self.states(cancelled) == ["wiki": .needsAuth])
        #expect(Self.errors(cancelled).first?.contains("cancelled at the terminal") == true)
        #expect(d.send(.masterExited(generation: d.g, status: 143, stderr: ""), at: 1).isEmpty)
        // The cancelling `fwd up` then takes its tunnel down.
        #expect(Self.states(d.want([])) == ["wiki": .down])
        #expect(d.machine.isIdle)
        // A cancel from an older login changes nothing.
        _ = d.want([Self.wiki], retry: ["wiki"])
        _ = d.send(.spawned(generation: d.g, pid: 101))
        #expect(d.send(.loginCancelled(generation: d.g - 1)).isEmpty)
        #expect(d.send(.loginImpossible(generation: d.g - 1, .password)).isEmpty)
    }

    @Test func furtherTunnelsOnALiveInteractiveMasterRideItWithoutALogin() {
        var d = Drive()
        Self.upInteractively(&d, [Self.wiki])
        let more = d.want([Self.wiki, Self.db], retry: ["db"])
        #expect(!more.contains { if case .spawnMaster = $0 { true } else { false } })
        #expect(more.contains(.addForward(generation: d.g, tunnel: "db", Self.db.forwards[0])))
    }
}

// MARK: network paths

/// Network-path checks (`pathCheck`, `transportChecked`) driven through the machine: what it asks the executor,
/// the lines a request gets, and how a master ended for its path comes back.
extension HostMachineTests {
    private static func answers(_ actions: [HostAction]) -> [HostAction] {
        actions.filter { if case .answered = $0 { true } else { false } }
    }

    private static func logs(_ actions: [HostAction]) -> [String] {
        actions.compactMap { if case .record(.log(.network, nil, "office", let m)) = $0 { m } else { nil } }
    }

    @Test func aLivePathIsCheckedOnceAndASecondReasonWaitsForThatCheck() {
        var d = Drive()
        _ = d.up([Self.wiki])
        let first = d.check(.check("address added"), token: 5)
        #expect(first == [.checkTransport(generation: d.g, reason: "address added")], "no line until the server has answered")
        #expect(d.check(.check("resumed"), token: 6).isEmpty, "one transport check at a time")
        let answered = d.send(.transportChecked(generation: d.g, answered: true, ms: 3, reason: "address added"))
        #expect(Self.logs(answered) == ["address added: checked office, the server answers through the master (3 ms)"])
        #expect(Self.answers(answered) == [.answered(token: 5, "office: the server answers (3 ms); nothing to do"),
                                           .answered(token: 6, "office: the server answers (3 ms); nothing to do")])
        #expect(answered.last == .checkTransport(generation: d.g, reason: "resumed"), "the waiting reason is checked next")
        let second = d.send(.transportChecked(generation: d.g, answered: true, ms: 4, reason: "resumed"))
        #expect(Self.answers(second).isEmpty)
        #expect(!second.contains { if case .checkTransport = $0 { true } else { false } })
        #expect(d.check(.ignore, token: 7) == [.answered(token: 7, "office: the path did not change")])
    }

    @Test func noAnswerRestartsTheMasterAndItsExitReconnectsAtOnce() {
        var d = Drive()
        _ = d.up([Self.wiki])
        _ = d.check(.check("`fwd reconnect` asked"), token: 9)
        let silent = d.send(.transportChecked(generation: d.g, answered: false, ms: 2000, reason: "`fwd reconnect` asked"))
        let reason = "`fwd reconnect` asked; no answer through the master within 2000 ms"
        #expect(silent == [.record(.log(.network, tunnel: nil, host: "office", message: "\(reason): restarting the master of office (ssh pid 100)")),
                           .terminateMaster])
        #expect(d.check(.check("resumed"), token: 10) == [.answered(token: 10, "office: restarting")], "a restart is under way")
        let old = d.g
        let exit = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection to office closed by remote host.\n"), at: 100)
        #expect(Self.answers(exit) == [.answered(token: 9, "office: restarted (\(reason))")])
        #expect(exit.contains(.record(.restart(tunnel: "wiki", reason: reason))))
        #expect(exit.contains { if case .record(.state("wiki", .starting, _, reason, "the network path changed; reconnecting")) = $0 { true } else { false } })
        #expect(exit.contains(.spawnMaster(generation: old + 1)), "no backoff wait")
        #expect(Self.waits(exit).isEmpty)
    }

    @Test func aMasterThatGoesWhileItsPathIsCheckedAnswersTheRequestAndForgetsTheCheck() {
        var d = Drive()
        _ = d.up([Self.wiki])
        _ = d.check(.check("address added"), token: 3)
        _ = d.check(.check("resumed"), token: 4)
        let exit = d.send(.masterExited(generation: d.g, status: 255, stderr: "Broken pipe"), at: 10)
        #expect(Self.answers(exit) == [.answered(token: 3, "office: the master is gone; reconnecting"),
                                       .answered(token: 4, "office: the master is gone; reconnecting")])
        // The check's late result changes nothing, and the next master starts with no check out.
        #expect(d.send(.transportChecked(generation: d.g, answered: false, ms: 2000, reason: "address added")).isEmpty)
        _ = d.send(.connectDue(generation: d.g), at: 11)
        _ = d.send(.spawned(generation: d.g, pid: 101))
        _ = d.send(.masterReady(generation: d.g))
        #expect(d.check(.check("resumed"), token: nil) == [.checkTransport(generation: d.g, reason: "resumed")])
    }

    @Test func aPathLostUnderAMasterAPersonLoggedInWaitsForThatPerson() {
        var d = Drive()
        Self.upInteractively(&d, [Self.wiki])
        let gone = d.check(.restart("10.0.0.5 left wlan0"), token: nil)
        #expect(gone.last == .terminateMaster)
        let exit = d.send(.masterExited(generation: d.g, status: 255, stderr: ""), at: 5)
        #expect(Self.states(exit) == ["wiki": .needsAuth])
        #expect(Self.errors(exit).allSatisfy { $0.hasPrefix("the network path to office changed (10.0.0.5 left wlan0); logging in again needs a person") })
        #expect(!exit.contains { if case .spawnMaster = $0 { true } else { false } })
        #expect(d.check(.check("resumed"), token: 2) == [.answered(token: 2, "office: nothing to check (logging in again needs you: `fwd up` on a terminal)")])
    }

    @Test func aRequestWhileNoMasterIsLiveSaysWhatTheHostIsDoing() {
        var d = Drive()
        #expect(d.check(.check("resumed"), token: 1) == [.answered(token: 1, "office: nothing to check (no tunnel wanted)")])
        _ = d.want([Self.wiki])
        #expect(d.check(.check("resumed"), token: 2) == [.answered(token: 2, "office: connecting")])
        _ = d.send(.spawned(generation: d.g, pid: 100))
        _ = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection refused"), at: 1)
        #expect(d.check(.check("resumed"), mayRestore: false, token: 3) == [.answered(token: 3, "office: reconnecting")])
        // Waiting out a backoff, a change that may bring the path back connects at once.
        let now = d.check(.check("resumed"), token: 4)
        #expect(now == [.record(.log(.network, tunnel: nil, host: "office", message: "netlink: reconnecting to office now")),
                        .spawnMaster(generation: d.g), .answered(token: 4, "office: reconnecting")])
        _ = d.send(.spawned(generation: d.g, pid: 101))
        _ = d.send(.masterExited(generation: d.g, status: 255, stderr: "Host key verification failed.\n"), at: 2)
        let failed = d.check(.check("resumed"), token: 5)
        #expect(failed == [.answered(token: 5, "office: nothing to check (waiting for you: the server's host key is unknown or changed; connect once with `ssh HOST` to check and accept it, then retry)")])
    }
    @Test func aPublicForwardThatIsNotSharedIsDegradedWithTheGapAndWhereItWasReachedIsRecorded() {
        var d = Drive()
        var pubrev = Self.tunnel("pubrev", ["0.0.0.0:18750:127.0.0.1:8700"], kind: .remote)
        pubrev.isPublic = true
        _ = d.up([pubrev])
        let gap = Sharing.Gap.serverLoopbackOnly(port: 18750)
        let kept = d.send(.probed(generation: d.g, [HostMachine.ProbedTunnel(tunnel: pubrev, results: [0: ProbeResult(outcome: .notShared(gap), latencyMs: 1, shared: [])])]))
        #expect(Self.states(kept) == ["pubrev": .degraded])
        #expect(kept.contains(.record(.state(tunnel: "pubrev", .degraded, pid: 100, error: gap.error, message: gap.summary))))
        #expect(kept.contains(.record(.probe(tunnel: "pubrev", [ForwardStatus(kind: .remote, spec: "0.0.0.0:18750:127.0.0.1:8700", probe: .remote,
                                                                              probeMs: 1, ok: false, shared: [])]))))
        #expect(!kept.contains(.terminateMaster) && !kept.contains { if case .cancelForward = $0 { true } else { false } },
                "the master and its forwards stay: the listener works through the server")
        // Later rounds on this master probe the server's loopback only; a new master is checked at the address again.
        let tick = d.send(.probeTick(generation: d.g))
        #expect(Self.jobs(tick).map(\.keptOnLoopback) == [true])
        _ = d.send(.probed(generation: d.g, [HostMachine.ProbedTunnel(tunnel: pubrev, results: [0: ProbeResult(outcome: .notShared(gap), latencyMs: 1, shared: [])])]))
        _ = d.send(.masterExited(generation: d.g, status: 255, stderr: "Connection closed by remote host\n"), at: 5)
        _ = d.send(.connectDue(generation: d.g), at: 6)
        _ = d.send(.spawned(generation: d.g, pid: 100))
        var ready = d.send(.masterReady(generation: d.g))
        ready += d.send(.forwardAdded(generation: d.g, tunnel: "pubrev", pubrev.forwards[0], .added(allocatedPort: nil)))
        #expect(Self.jobs(ready).map(\.keptOnLoopback) == [false])
        // Shared where it was asked for (after the server changed and the master reconnected): up, with the place.
        let shared = d.send(.probed(generation: d.g, [HostMachine.ProbedTunnel(tunnel: pubrev, results: [0: ProbeResult(outcome: .up, latencyMs: 1, shared: ["198.18.1.2:18750"])])]))
        #expect(Self.states(shared) == ["pubrev": .up])
        #expect(shared.contains(.record(.probe(tunnel: "pubrev", [ForwardStatus(kind: .remote, spec: "0.0.0.0:18750:127.0.0.1:8700", probe: .remote,
                                                                                probeMs: 1, ok: true, shared: ["198.18.1.2:18750"])]))))
    }

    @Test func aTargetThatIsDownOutweighsAForwardThatIsNotShared() {
        var d = Drive()
        var t = Self.tunnel("two", ["0.0.0.0:18750:127.0.0.1:8700", "18751:127.0.0.1:8701"], kind: .remote)
        t.isPublic = true
        _ = d.up([t])
        let results: [Int: ProbeResult] = [0: ProbeResult(outcome: .notShared(.serverLoopbackOnly(port: 18750)), latencyMs: 1, shared: []),
                                           1: ProbeResult(outcome: .targetDown("refused"), latencyMs: 1)]
        let actions = d.send(.probed(generation: d.g, [HostMachine.ProbedTunnel(tunnel: t, results: results)]))
        #expect(actions.contains(.record(.state(tunnel: "two", .degraded, pid: 100, error: "refused", message: "the connection is up but the target does not answer"))))
    }
}
