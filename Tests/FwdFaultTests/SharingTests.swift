import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Tunnels shared beyond loopback (`public = true`, issue 26), against a stock sshd in A: what fwd reports is
/// what a client in another namespace finds.
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct SharingTests {
    static let listenPort = 18750
    static let servicePort = 8700
    static let serviceBody = "laptop service in C"

    static let publicReverse = """
    [tunnels.pubrev]
    host = "lab"
    remote = "0.0.0.0:\(listenPort):127.0.0.1:\(servicePort)"
    public = true

    """

    static let gatewayReason = "the server keeps port \(listenPort) on its loopback (sshd GatewayPorts no): ask for GatewayPorts clientspecified, or reach it through the server"

    /// A page fetched inside `ns` from host:port, or nil.
    static func page(_ ns: String, _ host: String, _ port: Int) -> String? {
        (try? inNamespace(ns) { try HTTPGet.fetch(host: host, port: port, timeout: 1) })?.body
    }

    /// `shared` of the first forward of the only row of `fwd status --json`; nil when it is null or missing.
    static func shared(inJSON text: String) -> [String]? {
        let rows = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]]
        let forwards = rows?.first?["forwards"] as? [[String: Any]]
        return forwards?.first?["shared"] as? [String]
    }

    /// B reaches A's C-facing address through A's inner one (A delivers to its own addresses without forwarding).
    static func routeBToServerAddress(_ f: FaultFixture) throws {
        try run(["ip", "-n", f.topology.b, "route", "add", "\(Topology.serverAddress)/32", "via", Topology.serverInnerAddress])
    }

    /// sshd's default `GatewayPorts no` binds the -R listener on the server's loopback only: the tunnel is
    /// degraded with the cause and the fix, `fwd up` fails with that line, status says where it is kept, and
    /// that is the truth (the server's loopback serves the page, its address refuses). Once the server allows
    /// it and the master reconnects, the check after the reconnect finds it shared.
    @Test func publicRemoteForwardKeptOnTheServersLoopbackIsDegraded() async throws {
        try await FaultFixture.with(gatewayPorts: "no") { f in
            let service = try inNamespace(f.topology.c) { try TinyHTTPServer(host: "127.0.0.1", port: Self.servicePort, body: Self.serviceBody) }
            defer { service.stop() }
            try Self.routeBToServerAddress(f)
            try f.write(config: Self.publicReverse)

            let up = try f.fwd("up", "pubrev", "--timeout", "20")
            #expect(!up.ok, "fwd up must not report a loopback-only public -R as up: \(up.stdout)")
            #expect(up.stderr.contains("pubrev: degraded — \(Self.gatewayReason)"), "\(up.stderr)\n\(f.diagnostics())")
            #expect(f.state("pubrev") == .degraded)
            #expect(f.status("pubrev")?.lastError == Self.gatewayReason)

            // What fwd said is what is: the server's loopback serves the page, its own address does not.
            #expect(Self.page(f.topology.a, "127.0.0.1", Self.listenPort) == Self.serviceBody)
            #expect(Self.page(f.topology.a, Topology.serverAddress, Self.listenPort) == nil)
            #expect(Self.page(f.topology.b, Topology.serverAddress, Self.listenPort) == nil)

            let status = try f.fwd("status")
            #expect(status.stdout.contains("-R 0.0.0.0:\(Self.listenPort):127.0.0.1:\(Self.servicePort) (not shared: kept on the server's loopback)"), "\(status.stdout)")
            #expect(status.stdout.contains("degraded"), "\(status.stdout)")
            let json = try f.fwd("status", "--json")
            #expect(Self.shared(inJSON: json.stdout) == .some([]), "\(json.stdout)")

            // The server is told to honour the client's address and restarted; fwd's master reconnects, and the
            // check after the reconnect sees the listener where it was asked for.
            try f.sshd.setGatewayPorts("clientspecified")
            let restartsBefore = f.status("pubrev")?.restarts ?? 0
            f.sshd.kill()
            try f.sshd.start()
            let upAgain = f.waitForState("pubrev", .up, timeout: 30)
            #expect(upAgain != nil, "still \(f.state("pubrev")?.rawValue ?? "?"): \(f.status("pubrev")?.lastError ?? "")\n\(f.diagnostics())")
            #expect((f.status("pubrev")?.restarts ?? 0) > restartsBefore)
            #expect(f.status("pubrev")?.lastError == nil)
            #expect(f.status("pubrev")?.forwards.first?.shared == ["\(Topology.serverAddress):\(Self.listenPort)"])
            #expect(Self.page(f.topology.b, Topology.serverAddress, Self.listenPort) == Self.serviceBody)
        }
    }

    /// A -R bound to the server's own address fares the same under `GatewayPorts no`: sshd binds loopback, so
    /// the address asked for refuses. It is degraded with the same reason, not taken for a lost listener that
    /// fwd would re-add round after round.
    @Test func publicRemoteForwardOnTheServersAddressKeptOnLoopbackIsDegradedNotReAdded() async throws {
        try await FaultFixture.with(gatewayPorts: "no") { f in
            let service = try inNamespace(f.topology.c) { try TinyHTTPServer(host: "127.0.0.1", port: Self.servicePort, body: Self.serviceBody) }
            defer { service.stop() }
            try f.write(config: """
            [tunnels.pubrev]
            host = "lab"
            remote = "\(Topology.serverAddress):\(Self.listenPort):127.0.0.1:\(Self.servicePort)"
            public = true

            """)
            let up = try f.fwd("up", "pubrev", "--timeout", "20")
            #expect(up.stderr.contains("pubrev: degraded — \(Self.gatewayReason)"), "\(up.stderr)\n\(f.diagnostics())")
            let first = f.events().last?.id ?? 0
            try await Task.sleep(for: .seconds(2))  // four probe rounds
            let readded = f.events("pubrev", kind: .state).filter { $0.id > first && $0.message.contains("adding it again") }
            #expect(readded.isEmpty, "\(readded.map(\.message))")
            // The address was tried once for this master: sshd logs every refused channel at level ERROR, and a
            // listener it bound on loopback stays there while the forward lives.
            let refusals = f.sshd.log().split(separator: "\n").filter { $0.contains("connect_to \(Topology.serverAddress) port \(Self.listenPort)") }
            #expect(refusals.count == 1, "\(refusals)")
            #expect(f.state("pubrev") == .degraded)
            #expect(Self.page(f.topology.a, "127.0.0.1", Self.listenPort) == Self.serviceBody)
        }
    }

    /// With `GatewayPorts clientspecified` the same tunnel, added with the `publish-web` preset, is up, `fwd up`
    /// says where it is shared, and a client in a third namespace (B) loads the page at the server's address.
    @Test func publicRemoteForwardHonouredByTheServerIsUpAndReachable() async throws {
        try await FaultFixture.with(gatewayPorts: "clientspecified") { f in
            let service = try inNamespace(f.topology.c) { try TinyHTTPServer(host: "127.0.0.1", port: Self.servicePort, body: Self.serviceBody) }
            defer { service.stop() }
            try Self.routeBToServerAddress(f)
            try f.write(config: "")
            let add = try f.fwd("add", "pubrev", "--template", "publish-web", "--host", "lab", "--target", "127.0.0.1",
                                "--port", "\(Self.listenPort)", "--target-port", "\(Self.servicePort)")
            try #require(add.ok, "\(add.stderr)")

            let up = try f.fwd("up", "pubrev", "--timeout", "20")
            try #require(up.ok, "\(up.stderr)\n\(f.diagnostics())")
            let place = "\(Topology.serverAddress):\(Self.listenPort)"
            #expect(up.stdout == "pubrev: up (-R 0.0.0.0:\(Self.listenPort):127.0.0.1:\(Self.servicePort) shared on the server at \(place))\n", "\(up.stdout)")
            #expect(f.state("pubrev") == .up)
            #expect(Self.page(f.topology.b, Topology.serverAddress, Self.listenPort) == Self.serviceBody)

            let status = try f.fwd("status")
            #expect(status.stdout.contains("(shared on the server at \(place))"), "\(status.stdout)")
            let json = try f.fwd("status", "--json")
            #expect(Self.shared(inJSON: json.stdout) == [place], "\(json.stdout)")

            // The probe keeps checking at the server's address: a listener gone from there is noticed.
            #expect(f.waitUntil(timeout: 3) { (f.status("pubrev")?.forwards.first?.probeMs ?? 0) > 0 } != nil)
        }
    }

    /// Behind ProxyJump the master's own TCP connection goes to the jump host (A at 198.18.1.2), not to the
    /// server: the server's address is the last hop's target (A's inner address 198.18.2.1, which only the
    /// jump host and B reach). The check goes there, and B loads the page at that address.
    @Test func behindProxyJumpTheLastHopsTargetIsTheAddressChecked() async throws {
        try await FaultFixture.with(gatewayPorts: "clientspecified", sshdExtraAddresses: [Topology.serverInnerAddress]) { f in
            let service = try inNamespace(f.topology.c) { try TinyHTTPServer(host: "127.0.0.1", port: Self.servicePort, body: Self.serviceBody) }
            defer { service.stop() }
            let jumped = f.hostBlock("labj")
                .replacingOccurrences(of: "    HostName \(Topology.serverName)\n", with: "    HostName \(Topology.serverInnerAddress)\n    HostKeyAlias \(Topology.serverName)\n")
                .replacingOccurrences(of: "    Port 22\n", with: "    Port 22\n    ProxyJump lab\n")
            try f.write(userSSHConfig: f.hostBlock("lab") + jumped)
            try f.write(config: Self.publicReverse.replacingOccurrences(of: "host = \"lab\"", with: "host = \"labj\""))

            let up = try f.fwd("up", "pubrev", "--timeout", "20")
            try #require(up.ok, "\(up.stderr)\n\(f.diagnostics())")
            let master = try #require(f.masters().first)
            #expect(!ProcessTable.children(of: master).isEmpty, "no ProxyJump child under the master")
            let place = "\(Topology.serverInnerAddress):\(Self.listenPort)"
            #expect(f.status("pubrev")?.forwards.first?.shared == [place])
            #expect(up.stdout.contains("shared on the server at \(place)"), "\(up.stdout)")
            #expect(Self.page(f.topology.b, Topology.serverInnerAddress, Self.listenPort) == Self.serviceBody)
        }
    }

    /// A -D bound to C's LAN address with `public = true` serves a machine on that LAN (D): its requests leave
    /// through the server and reach B. Status and `fwd up` say it is shared, and on which address.
    @Test func publicSocksProxyOnTheLANServesAnotherMachine() async throws {
        try await FaultFixture.with { f in
            try f.topology.addLAN()
            let port = 11080
            let place = "\(Topology.lanClientSide):\(port)"
            try f.write(config: """
            [tunnels.lansocks]
            host = "lab"
            dynamic = "\(place)"
            public = true

            """)
            let up = try f.fwd("up", "lansocks", "--timeout", "20")
            try #require(up.ok, "\(up.stderr)\n\(f.diagnostics())")
            #expect(up.stdout == "lansocks: up (-D \(place) shared on \(place))\n", "\(up.stdout)")

            // D uses the proxy as any LAN client would; the name is resolved on the far side (socks5h).
            let curl = try ChildProcess.run(f.topology.exec(f.topology.d, ["curl", "-sS", "--max-time", "10", "-x", "socks5h://\(place)",
                                                                          "http://\(Topology.serviceName):\(FaultFixture.webPort)/"]), timeout: 15)
            #expect(curl.exit == .exited(0) && curl.output.contains(f.pageBody), "\(curl)")
            // D reaches nothing but C: the page came through the tunnel.
            let direct = try inNamespace(f.topology.d) { LocalPort.isAccepting(host: Topology.serviceAddress, port: FaultFixture.webPort, timeout: 0.5) }
            #expect(!direct)

            let status = try f.fwd("status")
            #expect(status.stdout.contains("-D \(place) (socks5h://\(place)) (shared on \(place))"), "\(status.stdout)")
            let json = try f.fwd("status", "--json")
            #expect(Self.shared(inJSON: json.stdout) == [place], "\(json.stdout)")
            #expect(f.state("lansocks") == .up)

            // The lan-socks preset takes every address of C: D reaches it on the LAN, and status lists both of C's.
            let every = 11081
            let add = try f.fwd("add", "anysocks", "--template", "lan-socks", "--host", "lab", "--port", "\(every)")
            try #require(add.ok, "\(add.stderr)")
            let upAll = try f.fwd("up", "anysocks", "--timeout", "20")
            try #require(upAll.ok, "\(upAll.stderr)\n\(f.diagnostics())")
            let both = ["\(Topology.clientAddress):\(every)", "\(Topology.lanClientSide):\(every)"]
            #expect(Set(f.status("anysocks")?.forwards.first?.shared ?? []) == Set(both))
            #expect(upAll.stdout.contains("shared on "), "\(upAll.stdout)")
            let viaAll = try ChildProcess.run(f.topology.exec(f.topology.d, ["curl", "-sS", "--max-time", "10", "-x", "socks5h://\(Topology.lanClientSide):\(every)",
                                                                            "http://\(Topology.serviceName):\(FaultFixture.webPort)/"]), timeout: 15)
            #expect(viaAll.exit == .exited(0) && viaAll.output.contains(f.pageBody), "\(viaAll)")
        }
    }
}
