import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func seconds(_ value: Double?) -> String { value.map { String(format: "%.3f s", $0) } ?? "never" }

/// The network between fwd (in C) and the SSH server (in A) fails in the ways real networks do.
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct NetworkFaultTests {
    @Test func topologyKeepsBReachableOnlyFromA() async throws {
        try await FaultFixture.with { f in
            let fromC = try inNamespace(f.topology.c) { LocalPort.isAccepting(host: Topology.serviceAddress, port: FaultFixture.webPort, timeout: 0.5) }
            let fromA = try inNamespace(f.topology.a) { LocalPort.isAccepting(host: Topology.serviceAddress, port: FaultFixture.webPort, timeout: 0.5) }
            #expect(!fromC, "C must not reach B directly")
            #expect(fromA, "A must reach B")
            let names = try run(f.topology.exec(f.topology.c, ["getent", "hosts", Topology.serverName]))
            #expect(names.contains(Topology.serverAddress), "\(names)")
        }
    }

    /// Silent loss with the default ServerAlive settings (1 s × 2): ssh gives up after 2–3 s, the tunnel leaves
    /// `up`, and comes back as soon as the path does — whether the outage ends while fwd waits out its backoff
    /// or while a new ssh is stuck connecting into the black hole.
    @Test func silentLossIsDetectedWithinTheBudgetAndRecoveredAtOnce() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            try f.write(config: f.webTunnel("wiki", port: 18080))
            let up = try f.fwd("up", "wiki")
            try #require(up.ok, "\(up.stderr)")
            var detections: [Double] = [], recoveries: [Double] = []
            // How long the path stays down after fwd noticed, per round. The long one spans what used to be two
            // ssh attempts timing out in the black hole, after which the path came back during a backoff step.
            for outage in [0.3, 2.0, 12.0] {
                let master = f.masters()
                try #require(master.count == 1)
                try f.topology.cutClientOff()
                let cut = Date()
                let leftUp = f.waitUntil(timeout: 15) { f.state("wiki") != .up }
                let firstState = f.state("wiki")
                let starting = f.waitForState("wiki", .starting, timeout: 15).map { _ in Date().timeIntervalSince(cut) }
                let exit = f.events(kind: .master).last { $0.message.contains("exited") }
                print("fwd fault: silent loss — tunnel left `up` after \(seconds(leftUp)) (to `\(firstState?.rawValue ?? "?")`), reached `starting` after \(seconds(starting)); \(exit?.message ?? "")")
                let detected = try #require(leftUp, "the loss was never noticed")
                #expect(detected <= 6, "detection took \(detected) s; the budget is 3 s (ServerAlive 1 s × 2)")
                // A probe that times out first makes it `degraded` for a moment; ssh's own exit must follow.
                #expect(firstState == .starting || firstState == .degraded, "the tunnel went to \(firstState?.rawValue ?? "?") first")
                #expect((starting ?? 99) <= 6, "`starting` after \(starting ?? -1) s")
                detections.append(detected)

                let attemptsBefore = f.events(kind: .master).filter { $0.message.contains("Connection timed out") }.count
                try await Task.sleep(for: .seconds(outage))
                try f.topology.reconnectClient()
                let restored = Date()
                let blind = f.events(kind: .master).filter { $0.message.contains("Connection timed out") }.count - attemptsBefore
                let page = f.waitForPage(port: 18080, timeout: 30)
                let state = f.waitForState("wiki", .up, timeout: 30).map { _ in Date().timeIntervalSince(restored) }
                print("fwd fault: silent loss — path back after \(outage) s more (\(blind) ssh attempt(s) timed out meanwhile): page loads again \(seconds(page)), state `up` \(seconds(state)) after the path returned")
                let back = try #require(page, "the tunnel did not come back")
                #expect(back <= 2, "recovery took \(back) s; expected ≤ 2 s")
                recoveries.append(back)
                #expect(f.masters().count == 1)
                #expect(f.orphanedSSH().isEmpty)
            }
            f.debug(f.eventLog())
            print("fwd fault: silent loss summary — detection \(detections.map { String(format: "%.2f", $0) }.joined(separator: "/")) s, recovery \(recoveries.map { String(format: "%.2f", $0) }.joined(separator: "/")) s")
        }
    }

    /// 200 ms ± 50 ms each way (RTT ≈ 400 ms) and no loss: ServerAlive and the probes must not mistake latency for
    /// a dead path. 20 s in CI, a minute with FWD_LONG_TESTS=1.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/dev/net/tun"), "needs /dev/net/tun for the delay link"))
    func delayCausesNoFalseRestarts() async throws {
        let period: Double = longTests ? 60 : 20
        try await FaultFixture.with(link: .delayed(meanMs: 200, jitterMs: 50), probeInterval: nil) { f in
            try f.write(config: f.webTunnel("wiki", port: 18080) + """
            [tunnels.socks]
            host = "lab"
            dynamic = "11080"

            """)
            let started = Date()
            let up = try f.fwd("up", "wiki", "socks", "--timeout", "60", timeout: 90)
            try #require(up.ok, "\(up.stderr)\n\(f.eventLog())")
            print("fwd fault: delay 200±50 ms each way — tunnels up \(seconds(Date().timeIntervalSince(started))) after `fwd up`")
            let master = f.masters()
            let firstEvent = f.events().last?.id ?? 0
            var fetched = 0, slowest = 0.0
            let end = Date().addingTimeInterval(period)
            while Date() < end {
                let t = Date()
                if f.fetch(port: 18080, timeout: 5)?.body == f.pageBody {
                    fetched += 1
                    slowest = max(slowest, Date().timeIntervalSince(t))
                }
                #expect(f.state("wiki") == .up && f.state("socks") == .up, "state left up under delay")
                try await Task.sleep(for: .seconds(1))
            }
            let restarts = (f.status("wiki")?.restarts ?? -1) + (f.status("socks")?.restarts ?? -1)
            let changes = f.events().filter { $0.id > firstEvent && ($0.kind == .state || $0.kind == .restart || $0.kind == .master) }
            print("fwd fault: delay 200±50 ms each way for \(Int(period)) s — restarts \(restarts), state changes \(changes.count), \(fetched) pages fetched (slowest \(String(format: "%.2f", slowest)) s), \(f.topology.delay?.relayed ?? 0) packets relayed")
            #expect(restarts == 0)
            #expect(changes.isEmpty, "\(changes.map(\.message))")
            #expect(f.masters() == master)
            #expect(fetched > 0)
        }
    }

    /// sshd killed and started again: fwd reconnects as soon as the port accepts, not after a backoff step.
    @Test func sshdRestartIsUsedAsSoonAsItListens() async throws {
        try await FaultFixture.with { f in
            try f.write(config: f.webTunnel("wiki", port: 18080))
            try #require(try f.fwd("up", "wiki").ok)
            var figures: [Double] = []
            for round in 1...3 {
                f.sshd.kill()
                #expect(f.waitUntil(timeout: 10) { f.state("wiki") != .up } != nil)
                // Long enough for at least one backoff step to pass while the server is down.
                try await Task.sleep(for: .seconds(round == 1 ? 1.5 : 3))
                try f.sshd.start()
                let back = try #require(f.waitForPage(port: 18080, timeout: 20), "round \(round): the tunnel did not come back")
                figures.append(back)
            }
            print("fwd fault: sshd restart — page loads \(figures.map { String(format: "%.3f", $0) }.joined(separator: ", ")) s after sshd listens again")
            #expect(figures.allSatisfy { $0 < 1.5 }, "expected ~0.3 s: \(figures)")
            // Three lost masters, plus any attempt that failed while sshd was starting: RESTARTS counts attempts,
            // each with its restart event.
            let restarts = f.status("wiki")?.restarts ?? 0
            #expect(restarts >= 3 && restarts == f.events("wiki", kind: .restart).count, "\(restarts)")
            #expect(f.masters().count == 1)
            #expect(f.orphanedSSH().isEmpty)
        }
    }

    /// After a silent loss the server keeps the old session — and its -R listener — until its ClientAlive fires
    /// (2 s × 2 here). fwd reconnects first, is refused the port, and retries until the server lets go.
    @Test func staleRemoteListenerIsRetriedUntilTheServerFreesIt() async throws {
        try await FaultFixture.with(clientAlive: (2, 2)) { f in
            // The -R target is a service in C itself.
            let local = try inNamespace(f.topology.c) { try TinyHTTPServer(host: "127.0.0.1", port: 13000, body: "service in C") }
            defer { local.stop() }
            try f.write(config: "[tunnels.back]\nhost = \"lab\"\nremote = \"127.0.0.1:19000:127.0.0.1:13000\"\n")
            try #require(try f.fwd("up", "back").ok)
            let oldPorts = try f.topology.sshClientPorts()
            try #require(oldPorts.count == 1, "\(oldPorts)")

            // The old session goes silent for good; new connections get through once the client has noticed.
            try f.topology.cutClientOff()
            let cut = Date()
            #expect(f.waitUntil(timeout: 15) { f.state("back") != .up } != nil)
            try f.topology.blackholeConnection(clientPort: oldPorts[0])
            try f.topology.reconnectClient()
            let reconnected = Date()

            // The server lets go of the old session (and its listener) when its ClientAlive fires.
            var freed: Double?, up: Double?
            _ = f.waitUntil(timeout: 45) {
                if freed == nil, f.sshd.log().contains("Timeout, client not responding") { freed = Date().timeIntervalSince(cut) }
                if up == nil, f.state("back") == .up { up = Date().timeIntervalSince(reconnected) }
                return freed != nil && up != nil
            }
            // sshd logs each refused tcpip-forward: "cannot listen to port: 19000".
            let refusals = f.sshd.log().components(separatedBy: "cannot listen to port: 19000").count - 1
            f.debug(f.sshd.log())
            f.debug(f.eventLog())
            print("fwd fault: stale -R — the server dropped the old session \(seconds(freed)) after the loss; the forward was refused \(refusals) time(s) and is `up` \(seconds(up)) after the path returned")
            #expect(refusals >= 1, "the server never refused the port: the test did not create a stale listener")
            #expect(up != nil, "the -R forward never came back: \(f.status("back")?.lastError ?? "")")
            #expect(try f.fwd("check", "back").ok)
            let viaServer = try inNamespace(f.topology.a) { try? HTTPGet.fetch(host: "127.0.0.1", port: 19000, timeout: 2) }
            #expect(viaServer?.body == "service in C")
        }
    }
}
