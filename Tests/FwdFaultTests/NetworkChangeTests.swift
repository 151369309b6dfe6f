import Foundation
@testable import FwdCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

private func seconds(_ value: Double?) -> String { value.map { String(format: "%.3f s", $0) } ?? "never" }

/// The client's network changes under a running tunnel (issue 13): fwd, inside C, hears the kernel's rtnetlink
/// events and restarts a master only when its own path is gone.
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct NetworkChangeTests {
    /// Brings `wiki` up and waits until the supervisor has learned the master's path (its first network event).
    private func upWithPath(_ f: FaultFixture, host: String = "lab") async throws {
        try f.write(config: f.webTunnel("wiki", port: 18080, host: host))
        let up = try f.fwd("up", "wiki")
        try #require(up.ok, "\(up.stderr)")
        // The path is learned right after the master connects, with one transport check to time it (~50 ms).
        try await Task.sleep(for: .seconds(1))
    }

    private func ip(_ f: FaultFixture, _ args: String...) throws {
        try run(["ip", "-n", f.topology.c] + args)
    }

    /// Wi-Fi to Ethernet, a new DHCP lease: a new address arrives, the old one goes. The old connection is dead
    /// without anything telling ssh; fwd restarts the master the moment the address is removed.
    @Test func addressMoveRestartsTheMasterOnceAndThePageWorksAgainAtOnce() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            // Keep the new address when the old (primary) one goes, as address managers do.
            try run(f.topology.exec(f.topology.c, ["sysctl", "-q", "-w", "net.ipv4.conf.vc.promote_secondaries=1"]))
            try await upWithPath(f)
            let before = f.events().last?.id ?? 0
            let master = f.masters()
            try ip(f, "addr", "add", "198.18.1.3/24", "dev", "vc")
            try await Task.sleep(for: .milliseconds(300))
            let addedOnly = f.events().filter { $0.id > before && $0.kind == .restart }
            #expect(addedOnly.isEmpty, "a new address alone must not restart anything: \(addedOnly.map(\.message))")
            #expect(f.masters() == master)

            try ip(f, "addr", "del", "\(Topology.clientAddress)/24", "dev", "vc")
            let page = f.waitForPage(port: 18080, timeout: 15)
            print("fwd network: address moved (198.18.1.1 → 198.18.1.3) — page loads again \(seconds(page)) after the old address was removed")
            let back = try #require(page, "the tunnel did not come back\n\(f.diagnostics())")
            #expect(back <= 1.0, "recovery took \(back) s; the goal is ≤ 0.5 s")
            // Long enough for ServerAlive (1 s × 2) to have fired on the old connection had fwd not acted.
            try await Task.sleep(for: .seconds(4))
            let restarts = f.events("wiki", kind: .restart).filter { $0.id > before }
            print("fwd network: restart events: \(restarts.map(\.message))")
            #expect(restarts.count == 1, "\(f.eventLog())")
            #expect(restarts.first?.message == "network change: 198.18.1.1 removed from vc", "\(restarts.map(\.message))")
            #expect(f.status("wiki")?.restarts == 1)
            #expect(f.state("wiki") == .up)
            #expect(f.masters().count == 1)
            #expect(f.sshd.log().contains("Connection from 198.18.1.3 port "), "the new master does not use the new address")
        }
    }

    /// Behind ProxyJump the master talks to a child `ssh -W` through pipes; the TCP connection whose address
    /// goes away is the child's. fwd finds it among the master's descendants and reacts the same way.
    @Test func addressMoveUnderProxyJumpIsSeenThroughTheJumpConnection() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            try run(f.topology.exec(f.topology.c, ["sysctl", "-q", "-w", "net.ipv4.conf.vc.promote_secondaries=1"]))
            // A jump through A to A's own loopback (sshd listens there too): the shape of a bastion, with the one sshd there is.
            let jumped = f.hostBlock("labj")
                .replacingOccurrences(of: "    HostName \(Topology.serverName)\n", with: "    HostName 127.0.0.1\n    HostKeyAlias \(Topology.serverName)\n")
                .replacingOccurrences(of: "    Port 22\n", with: "    Port 22\n    ProxyJump lab\n")
            try f.write(userSSHConfig: f.hostBlock("lab") + jumped)
            try await upWithPath(f, host: "labj")
            let master = try #require(f.masters().first)
            #expect(!ProcessTable.children(of: master).isEmpty, "no ProxyJump child under the master")
            let before = f.events().last?.id ?? 0
            try ip(f, "addr", "add", "198.18.1.3/24", "dev", "vc")
            try await Task.sleep(for: .milliseconds(300))
            try ip(f, "addr", "del", "\(Topology.clientAddress)/24", "dev", "vc")
            let page = f.waitForPage(port: 18080, timeout: 15)
            print("fwd network: address moved under ProxyJump — page loads again \(seconds(page)) after the old address was removed")
            let back = try #require(page, "the tunnel did not come back\n\(f.diagnostics())")
            #expect(back <= 1.5, "recovery took \(back) s")
            let restarts = f.events("wiki", kind: .restart).filter { $0.id > before }
            #expect(restarts.map(\.message) == ["network change: 198.18.1.1 removed from vc"], "\(f.eventLog())")
        }
    }

    /// An unrelated interface comes up (with an address) and goes down again: no master uses it, nothing restarts.
    @Test func unrelatedInterfaceChangesRestartNothing() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            try await upWithPath(f)
            let before = f.events().last?.id ?? 0
            let master = f.masters()
            var notUp: [String] = []
            func watch(_ period: Double) {
                let end = Date().addingTimeInterval(period)
                while Date() < end {
                    if let s = f.state("wiki"), s != .up { notUp.append(s.rawValue) }
                    usleep(10_000)
                }
            }
            // This kernel has no dummy module: a veth pair with both ends in C stands in (it gets a carrier once both are up).
            try ip(f, "link", "add", "fwdd0", "type", "veth", "peer", "name", "fwdd1")
            try ip(f, "addr", "add", "198.19.5.1/24", "dev", "fwdd0")
            try ip(f, "link", "set", "fwdd1", "up")
            try ip(f, "link", "set", "fwdd0", "up")
            watch(1.5)
            try ip(f, "link", "set", "fwdd0", "down")
            watch(1.5)
            try ip(f, "link", "del", "fwdd0")
            watch(1.5)
            let after = f.events().filter { $0.id > before }
            print("fwd network: unrelated interface up and down — \(after.count) event(s) logged meanwhile: \(after.map(\.message))")
            #expect(notUp.isEmpty, "the tunnel left `up`: \(notUp)")
            #expect(f.status("wiki")?.restarts == 0)
            #expect(after.filter { $0.kind == .restart || $0.kind == .network || $0.kind == .master }.isEmpty, "\(after.map(\.message))")
            #expect(f.masters() == master)
            #expect(f.fetch(port: 18080)?.body == f.pageBody)
        }
    }

    /// The route to the server goes away and comes back: fwd notices the first at once (a check that gets no
    /// answer) and reconnects the moment the second arrives, not after a backoff step or ServerAlive.
    @Test func routeToTheServerRemovedAndRestored() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            try await upWithPath(f)
            let before = f.events().last?.id ?? 0
            try ip(f, "route", "del", "198.18.1.0/24", "dev", "vc")
            let detected = f.waitUntil(timeout: 10) { f.state("wiki") != .up }
            // The first restart after the route went: the one the network change caused (failed attempts follow).
            let restart = f.events("wiki", kind: .restart).first { $0.id > before }
            print("fwd network: route removed — tunnel left `up` after \(seconds(detected)): \(restart?.message ?? "no restart event")")
            let noticed = try #require(detected, "the lost route was never noticed")
            #expect(noticed <= 1.0, "detection took \(noticed) s; ServerAlive alone takes 2–3 s")
            #expect(restart?.message.contains("no route to \(Topology.serverAddress)") == true, "\(restart?.message ?? "")")
            // Long enough for the reconnect attempts to fail and back off.
            try await Task.sleep(for: .seconds(2))
            try ip(f, "route", "add", "198.18.1.0/24", "dev", "vc", "src", Topology.clientAddress)
            let page = f.waitForPage(port: 18080, timeout: 15)
            print("fwd network: route restored — page loads again \(seconds(page)) later")
            f.debug(f.eventLog())
            let back = try #require(page, "the tunnel did not come back\n\(f.diagnostics())")
            #expect(back <= 1.0, "recovery took \(back) s")
            #expect(f.waitForState("wiki", .up, timeout: 5) != nil)
            #expect(f.masters().count == 1)
            #expect(f.orphanedSSH().isEmpty)
        }
    }

    /// `fwd reconnect`: a master whose path is fine is left alone; one whose connection is silently dead (nothing
    /// on the client changed, so no event) is restarted at once and the command returns when the tunnel is up.
    @Test func reconnectChecksAndRestartsOnlyADeadMaster() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            try await upWithPath(f)
            let fine = try f.fwd("reconnect", "wiki")
            #expect(fine.ok, "\(fine.stderr)")
            #expect(fine.stdout.contains("lab: the server answers"), "\(fine.stdout)")
            #expect(f.status("wiki")?.restarts == 0)

            let ports = try f.topology.sshClientPorts()
            try #require(ports.count == 1, "\(ports)")
            try f.topology.blackholeConnection(clientPort: ports[0])
            let start = Date()
            let dead = try f.fwd("reconnect", "--all")
            let took = Date().timeIntervalSince(start)
            print("fwd network: `fwd reconnect --all` on a silently dead master — returned after \(seconds(took)): \(dead.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
            #expect(dead.ok, "\(dead.stderr)")
            #expect(dead.stdout.contains("lab: restarted (`fwd reconnect` asked; no answer through the master"), "\(dead.stdout)")
            #expect(took < 2, "ServerAlive would have taken 2–3 s")
            #expect(f.state("wiki") == .up)
            #expect(f.fetch(port: 18080)?.body == f.pageBody)
            let restart = f.events("wiki", kind: .restart).last
            #expect(restart?.message.hasPrefix("`fwd reconnect` asked; no answer through the master within") == true, "\(restart?.message ?? "")")
        }
    }

    /// The NetworkManager dispatcher script from templates/ runs `fwd reconnect --all` as the configured user on
    /// the actions that can change a path, and does nothing on others.
    @Test func dispatcherScriptAsksTheSupervisorToCheck() async throws {
        try await FaultFixture.with(probeInterval: nil) { f in
            try await upWithPath(f)
            let script = FwdBinary.packageRoot + "/templates/networkmanager/90-fwd-reconnect"
            var env = f.environment
            env["FWD_USER"] = String(cString: getpwuid(geteuid())!.pointee.pw_name)
            env["FWD_BIN"] = FaultFixture.binary
            let checks = { f.events(kind: .network).filter { $0.message.hasPrefix("`fwd reconnect` asked: checked lab") }.count }
            func dispatch(_ action: String) throws -> (exit: ChildExit?, output: String) {
                let out = f.dir + "/dispatcher-\(action).out"
                let child = try ChildProcess(f.topology.exec(f.topology.c, [script, "vc", action]), outputPath: out, environment: env)
                let exit = child.waitExit(timeout: 30)
                if exit == nil { child.kill() }
                return (exit, FileSystem.read(out) ?? "")
            }
            let ignored = try dispatch("pre-down")
            #expect(ignored.exit == .exited(0), "\(ignored.output)")
            #expect(checks() == 0)
            let up = try dispatch("up")
            #expect(up.exit == .exited(0), "\(up.output)")
            #expect(checks() == 1, "\(f.eventLog())")
            #expect(f.status("wiki")?.restarts == 0)
        }
    }

    /// The listener itself, against the kernel: a namespace of its own, a veth pair, an address on one end.
    @Test func netlinkMonitorReportsRealKernelEvents() async throws {
        let ns = "\(Topology.prefix)\(getpid())nl"
        try run(["ip", "netns", "add", ns])
        defer { _ = try? ChildProcess.run(["ip", "netns", "del", ns]) }
        // The socket joins the namespace of the thread that creates it.
        let monitor = try inNamespace(ns) { try NetlinkMonitor() }
        defer { monitor.stop() }
        let changes = monitor.changes()
        try run(["ip", "-n", ns, "link", "add", "fwdd0", "type", "veth", "peer", "name", "fwdd1"])
        try run(["ip", "-n", ns, "link", "set", "fwdd1", "up"])
        try run(["ip", "-n", ns, "link", "set", "fwdd0", "up"])
        try run(["ip", "-n", ns, "addr", "add", "198.19.6.1/24", "dev", "fwdd0"])
        try run(["ip", "-n", ns, "addr", "del", "198.19.6.1/24", "dev", "fwdd0"])
        try run(["ip", "-n", ns, "link", "set", "fwdd0", "down"])
        var seen: [NetworkChange] = []
        let collector = Task {
            var got: [NetworkChange] = []
            for await c in changes {
                got.append(c)
                if c == .linkChanged(interface: "fwdd0", up: false), got.contains(.linkChanged(interface: "fwdd0", up: true)) { break }
            }
            return got
        }
        let timeout = Task {
            try await Task.sleep(for: .seconds(5))
            monitor.stop()
        }
        seen = await collector.value
        timeout.cancel()
        print("fwd network: rtnetlink events seen: \(seen.map(\.description))")
        #expect(seen.contains(.addressAdded(address: "198.19.6.1", interface: "fwdd0")))
        #expect(seen.contains(.addressRemoved(address: "198.19.6.1", interface: "fwdd0")))
        #expect(seen.contains(.routeChanged(destination: "198.19.6.0/24", removed: false, interface: "fwdd0")))
        #expect(seen.contains(.linkChanged(interface: "fwdd0", up: true)))
        #expect(seen.last == .linkChanged(interface: "fwdd0", up: false))
    }
}
