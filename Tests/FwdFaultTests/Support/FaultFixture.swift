import Foundation
@testable import FwdCore
import FwdLab
@_exported import FwdTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// One fault-test world: the three namespaces, sshd in A, an HTTP and a banner service in B, and fwd's config,
/// state and "user" ssh_config in a private directory; fwd runs in C. `with` tears everything down, even when
/// the test throws: the supervisor, every process left in the namespaces, the namespaces, the files. Running
/// fwd, waiting and fetching come from `FwdWorld`; this fixture runs them in C and reads states from the
/// database.
final class FaultFixture: FwdWorld, @unchecked Sendable {
    let dir: String
    let topology: Topology
    let sshd: NamespacedSSHD
    private(set) var web: TinyHTTPServer?
    private(set) var banner: TestListener?
    let probeInterval: Double?
    let pageBody = "<h1>service on B</h1>"
    static let webPort = 8080
    static let bannerPort = 2525

    /// Each reading is one query on the database.
    let statePollInterval = 0.01

    private init(link: Topology.Link, sshdPorts: [Int], clientAlive: (interval: Int, count: Int), probeInterval: Double?,
                 gatewayPorts: String, sshdExtraAddresses: [String]) throws {
        dir = NSTemporaryDirectory() + "\(Topology.prefix)\(getpid())-\(UUID().uuidString.prefix(8))"
        self.probeInterval = probeInterval
        try Self.makeDirectories(dir)
        topology = try Topology(link: link)
        do {
            sshd = try NamespacedSSHD(dir: dir + "/sshd", namespace: topology.a, ports: sshdPorts,
                                      clientAliveInterval: clientAlive.interval, clientAliveCountMax: clientAlive.count,
                                      gatewayPorts: gatewayPorts, extraAddresses: sshdExtraAddresses)
        } catch {
            topology.tearDown()
            try? FileManager.default.removeItem(atPath: dir)
            throw error
        }
    }

    static func with<T>(link: Topology.Link = .veth, sshdPorts: [Int] = [22], clientAlive: (interval: Int, count: Int) = (5, 3),
                        probeInterval: Double? = 0.5, gatewayPorts: String = "no", sshdExtraAddresses: [String] = [],
                        _ body: (FaultFixture) async throws -> T) async throws -> T {
        let fixture = try FaultFixture(link: link, sshdPorts: sshdPorts, clientAlive: clientAlive, probeInterval: probeInterval,
                                       gatewayPorts: gatewayPorts, sshdExtraAddresses: sshdExtraAddresses)
        defer { fixture.tearDown() }
        try fixture.startServices()
        try fixture.sshd.start()
        try fixture.write(userSSHConfig: fixture.hostBlock("lab"))
        return try await body(fixture)
    }

    func startServices() throws {
        let body = pageBody
        web = try inNamespace(topology.b) { try TinyHTTPServer(host: Topology.serviceAddress, port: Self.webPort, body: body) }
        banner = try inNamespace(topology.b) { try BannerServer.start(host: Topology.serviceAddress, port: Self.bannerPort) }
    }

    func stopWeb() {
        web?.stop()
        web = nil
    }

    func startWeb() throws {
        let body = pageBody
        web = try inNamespace(topology.b) { try TinyHTTPServer(host: Topology.serviceAddress, port: Self.webPort, body: body) }
    }

    private func tearDown() {
        stopEverything(supervisorGrace: 3)
        web?.stop()
        banner?.stop()
        sshd.kill()
        topology.tearDown()
        removeFiles()
    }

    // MARK: configuration

    /// A Host block for the user's ssh_config: the server by its name in C's /etc/hosts, this fixture's key.
    func hostBlock(_ alias: String, port: Int = 22, identity: String? = nil, knownHosts: String? = nil) -> String {
        """
        Host \(alias)
            HostName \(Topology.serverName)
            Port \(port)
            User root
            IdentityFile \(identity ?? sshd.clientKey)
            IdentitiesOnly yes
            UserKnownHostsFile \(knownHosts ?? sshd.knownHosts)
            StrictHostKeyChecking yes

        """
    }

    /// `[tunnels.NAME]` with a -L forward from C's loopback to the HTTP service on B, through A.
    func webTunnel(_ name: String, port: Int, host: String = "lab", probe: String = "http") -> String {
        "[tunnels.\(name)]\nhost = \"\(host)\"\nlocal = \"\(port):\(Topology.serviceName):\(Self.webPort)\"\nprobe = \"\(probe)\"\n\n"
    }

    // MARK: fwd runs in C

    func placed(_ argv: [String]) -> [String] { topology.exec(topology.c, argv) }

    func inPlace<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T { try inNamespace(topology.c, body) }

    // MARK: observing

    private let storeLock = NSLock()
    private var openedStore: Store?

    /// The state database, read directly (cheaper than `fwd status` when polling every few ms).
    func store() throws -> Store {
        try storeLock.withLock {
            if let openedStore { return openedStore }
            let s = try Store(path: paths.database)
            openedStore = s
            return s
        }
    }

    func status(_ name: String) -> TunnelStatus? { try? store().tunnel(name) }

    func state(_ name: String) -> TunnelState? { status(name)?.state }

    /// Polls an HTTP GET through `port` from inside C until the page loads; seconds taken, or nil.
    func waitForPage(port: Int, timeout: Double) -> Double? {
        let body = pageBody
        return try? inNamespace(topology.c) {
            let start = Date()
            while Date().timeIntervalSince(start) < timeout {
                if (try? HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: 0.5))?.body == body {
                    return Date().timeIntervalSince(start)
                }
                usleep(5_000)
            }
            return nil
        }
    }

    /// ssh processes of this fixture that no running supervisor owns.
    func orphanedSSH() -> [Int32] {
        let supervisors = Set(supervisorProcesses())
        return sshProcesses().filter { pid in !supervisors.contains(ProcessTable.parent(of: pid) ?? -1) }
    }

    /// Unreaped children of `pid`.
    func zombies(of pid: Int32) -> [Int32] {
        ProcessTable.allPids().filter { ProcessTable.parent(of: $0) == pid && ProcessTable.state(of: $0) == "Z" }
    }

    /// The whole event log, one line per event, for a failing test's output (or FWD_FAULT_DEBUG=1).
    func eventLog() -> String {
        let start = events().first?.time ?? Date()
        return events().map { e in
            String(format: "%8.3f ", e.time.timeIntervalSince(start)) + "\(e.kind) \(e.tunnel ?? "-") \(e.from ?? "")→\(e.to ?? "") \(e.message)"
        }.joined(separator: "\n")
    }

    /// What a failing test needs to see: the end of the event log, of ssh's and sshd's logs, and the ssh processes.
    func diagnostics() -> String {
        let ssh = sshProcesses().map { "\($0) [\(ProcessTable.state(of: $0) ?? "?")] parent \(ProcessTable.parent(of: $0) ?? -1): \(ProcessTable.commandLine(of: $0).joined(separator: " "))" }
        let logs = ((try? FileManager.default.contentsOfDirectory(atPath: stateDir + "/logs")) ?? []).sorted().map { name in
            "--- logs/\(name):\n" + (FileSystem.read(stateDir + "/logs/" + name) ?? "").split(separator: "\n").suffix(15).joined(separator: "\n")
        }
        return (["--- events:", eventLog().split(separator: "\n").suffix(30).joined(separator: "\n"), "--- ssh processes:"] + ssh + logs
            + ["--- sshd log:", sshd.log().split(separator: "\n").suffix(20).joined(separator: "\n")]).joined(separator: "\n")
    }

    func debug(_ text: @autoclosure () -> String) {
        if ProcessInfo.processInfo.environment["FWD_FAULT_DEBUG"] == "1" { print(text()) }
    }

    /// Events of kind `kind` for `tunnel`, oldest first.
    func events(_ tunnel: String? = nil, kind: EventKind? = nil) -> [Event] {
        var all: [Event] = []
        var after: Int64 = 0
        while let page = try? store().events(tunnel: tunnel, after: after, limit: 1000), !page.isEmpty {
            all += page
            after = page.last!.id
        }
        return kind.map { k in all.filter { $0.kind == k } } ?? all
    }
}

/// A service that speaks first: sends one line on connect, then closes (like an SMTP or SSH greeting).
enum BannerServer {
    static let greeting = "220 svc-b ready\r\n"

    static func start(host: String, port: Int) throws -> TestListener {
        try TestListener(host: host, port: port, .greet(greeting, thenClose: true))
    }
}
