import Testing
@testable import FwdCore

/// `HostMachine`'s per-tunnel bookkeeping alone.
@Suite struct ForwardTableTests {
    private static func tunnel(_ name: String, _ specs: [String], kind: ForwardKind = .local) -> Tunnel {
        Tunnel(name: name, host: "office", forwards: specs.map { try! ForwardSpec.parse($0, kind: kind) }, probe: nil)
    }

    private static let two = tunnel("two", ["8080:a:1", "8081:b:2"])

    @Test func forwardsAreSentOneAtATimeInOrderUntilAllAreLive() {
        var table = ForwardTable()
        let t = Self.two
        #expect(table.isUntouched("two"))
        #expect(table.next(for: t) == .send(t.forwards[0]))
        #expect(!table.isUntouched("two"))
        #expect(table.next(for: t) == .inFlight, "the answer to the first request comes first")
        #expect(table.answered("two", t.forwards[1]) == nil, "no request for that spec is out")
        #expect(table.answered("two", t.forwards[0]) == t)
        #expect(table.answered("two", t.forwards[0]) == nil, "an answer is taken once")
        #expect(table.live("two", t.forwards[0], ms: 1, allocatedPort: nil) == nil)
        #expect(!table.isComplete(t))
        #expect(table.next(for: t) == .send(t.forwards[1]))
        _ = table.answered("two", t.forwards[1])
        _ = table.live("two", t.forwards[1], ms: 1, allocatedPort: nil)
        #expect(table.isComplete(t))
        #expect(table.next(for: t) == .allLive)
        #expect(table.added["two"] == t.forwards)
    }

    @Test func aRemoteForwardKeepsItsConfirmationForOneProbeAndAPortZeroItsAllocatedPort() {
        var table = ForwardTable()
        let fixed = Self.tunnel("fixed", ["8022:localhost:22"], kind: .remote).forwards[0]
        let any = Self.tunnel("any", ["0:localhost:3000"], kind: .remote).forwards[0]
        let local = Self.two.forwards[0]
        #expect(table.live("fixed", fixed, ms: 0.4, allocatedPort: nil) == nil)
        #expect(table.live("any", any, ms: 0.7, allocatedPort: 35733) == 35733)
        #expect(table.live("two", local, ms: 0.2, allocatedPort: 9999) == nil, "a -L forward has no server-picked port")
        #expect(table.allocated == [any: 35733])
        #expect(table.takeConfirmation(fixed) == 0.4)
        #expect(table.takeConfirmation(fixed) == nil, "later probes go through the listener")
        #expect(table.takeConfirmation(local) == nil)
        // Cancelling the tunnel takes its port and its confirmation with it.
        #expect(table.cancel("any") == [any])
        #expect(table.allocated.isEmpty)
        #expect(table.takeConfirmation(any) == nil)
        #expect(table.cancel("any") == [])
    }

    @Test func aTunnelsRemoteRefusalsCountUntilItIsCompleteOrRetriedAfterFailing() {
        var table = ForwardTable()
        let r = Self.tunnel("expose", ["8022:localhost:22"], kind: .remote)
        #expect(table.listenerRefused("expose") == 1)
        #expect(table.listenerRefused("expose") == 2)
        // A changed definition forgets the failure, not the count; asking again for a tunnel that has not failed
        // changes nothing.
        table.retry("expose")
        table.fail("expose", .remoteListenerHeld(evidence: "e", retries: 2))
        table.forgetFailure("expose")
        #expect(!table.hasFailed("expose"))
        #expect(table.listenerRefused("expose") == 3)
        // Asking again for the failed tunnel starts both over.
        table.fail("expose", .remoteListenerHeld(evidence: "e", retries: 3))
        #expect(table.failures["expose"] == .remoteListenerHeld(evidence: "e", retries: 3))
        #expect(!table.isUntouched("expose") && !table.isComplete(r))
        table.retry("expose")
        #expect(!table.hasFailed("expose"))
        #expect(table.listenerRefused("expose") == 1)
        // So does getting all of its forwards live.
        _ = table.next(for: r)
        _ = table.answered("expose", r.forwards[0])
        _ = table.live("expose", r.forwards[0], ms: 1, allocatedPort: nil)
        #expect(table.next(for: r) == .allLive)
        #expect(table.listenerRefused("expose") == 1)
    }

    @Test func probesDoNotOverlapAndSilenceCountsUpToTheLimit() {
        var table = ForwardTable()
        #expect(table.startProbes(["db", "wiki"]) == ["db", "wiki"])
        #expect(table.startProbes(["db", "wiki", "web"]) == ["web"])
        table.probeDone("db")
        #expect(table.startProbes(["db", "wiki"]) == ["db"])
        #expect(table.probeUnanswered("wiki", limit: 3) == (1, false))
        #expect(table.probeUnanswered("wiki", limit: 3) == (2, false))
        #expect(table.probeUnanswered("wiki", limit: 3) == (3, true))
        #expect(table.stalled["wiki"] == 0, "the count starts over once the master is restarted")
        _ = table.probeUnanswered("wiki", limit: 3)
        table.probeAnswered("wiki")
        #expect(table.probeUnanswered("wiki", limit: 3) == (1, false))
    }

    @Test func aGoneMasterTakesEverythingLiveWithItButFailuresAndCountsStay() {
        var table = ForwardTable()
        let t = Self.two
        let any = Self.tunnel("any", ["0:localhost:3000"], kind: .remote)
        _ = table.next(for: t)
        _ = table.live("any", any.forwards[0], ms: 1, allocatedPort: 4000)
        _ = table.startProbes(["any"])
        table.fail("db", .localPortTaken(t.forwards[0], holder: nil))
        _ = table.listenerRefused("any")
        _ = table.probeUnanswered("any", limit: 3)
        table.masterGone()
        #expect(table.added.isEmpty && table.allocated.isEmpty)
        #expect(table.isUntouched("two"), "no request is in flight any more")
        #expect(table.answered("two", t.forwards[0]) == nil, "the old master's answer is stale")
        #expect(table.takeConfirmation(any.forwards[0]) == nil)
        #expect(table.startProbes(["any"]) == ["any"])
        #expect(table.hasFailed("db"))
        #expect(table.listenerRefused("any") == 2)
        #expect(table.stalled["any"] == 1)
    }

    @Test func aListenerKeptOnTheServersLoopbackIsRememberedUntilItsForwardOrMasterGoes() {
        var table = ForwardTable()
        let pub = Self.tunnel("pub", ["0.0.0.0:18750:localhost:80", "0.0.0.0:18751:localhost:81"], kind: .remote)
        for f in pub.forwards { _ = table.live("pub", f, ms: 1, allocatedPort: nil) }
        table.keptOnServerLoopback(pub.forwards[0])
        #expect(table.keptOnLoopback == [pub.forwards[0]])
        // Cancelled (to be added again): the next listener may be bound elsewhere.
        _ = table.cancel("pub")
        #expect(table.keptOnLoopback.isEmpty)
        for f in pub.forwards { _ = table.live("pub", f, ms: 1, allocatedPort: nil) }
        table.keptOnServerLoopback(pub.forwards[1])
        // A new master: its session binds by the server's current GatewayPorts, so it is checked again.
        table.masterGone()
        #expect(table.keptOnLoopback.isEmpty)
    }
}
