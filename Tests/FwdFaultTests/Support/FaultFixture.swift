import Foundation
@testable import FwdCore
import FwdLab
@_exported import FwdTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// One fault-test world: the three namespaces, sshd in A, an HTTP and a banner service in B, and fwd's config,
/// state and "user" ssh_config in a private directory; fwd runs in C. `with` tears everything down, even when
/// the test throws: the supervisor, every process left in the namespaces, the namespaces, the files.
final class FaultFixture: FwdWorld, @unchecked Sendable {
    let dir: String
    let topology: Topology
    let sshd: NamespacedSSHD
    private(set) var web: TinyHTTPServer?
    private(set) var banner: BannerServer?
    let probeInterval: Double?
    let pageBody = "<h1>service on B</h1>"
    static let webPort = 8080
    static let bannerPort = 2525

    var configPath: String { dir + "/config/fwd.toml" }
    var stateDir: String { dir + "/state" }
    var userSSHConfig: String { dir + "/home/.ssh/config" }
    var paths: FwdPaths { FwdPaths(config: configPath, stateDirectory: stateDir, userSSHConfig: userSSHConfig) }

    static var binary: String { FwdBinary.path }

    private init(link: Topology.Link, sshdPorts: [Int], clientAlive: (interval: Int, count: Int), probeInterval: Double?,
                 gatewayPorts: String, sshdExtraAddresses: [String]) throws {
        dir = NSTemporaryDirectory() + "\(Topology.prefix)\(getpid())-\(UUID().uuidString.prefix(8))"
        self.probeInterval = probeInterval
        try FileSystem.makePrivateDirectory(dir + "/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
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
        banner = try inNamespace(topology.b) { try BannerServer(host: Topology.serviceAddress, port: Self.bannerPort) }
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
        for pid in supervisorProcesses() { ProcessTable.terminate(pid, grace: 3) }
        for pid in sshProcesses() { ProcessTable.terminate(pid, grace: 0.5) }
        web?.stop()
        banner?.stop()
        sshd.kill()
        topology.tearDown()
        try? FileManager.default.removeItem(atPath: paths.controlDirectory)
        try? FileManager.default.removeItem(atPath: dir)
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

    func write(config: String) throws { try FileSystem.writeAtomically(config, to: configPath) }

    func write(userSSHConfig text: String) throws { try FileSystem.writeAtomically(text, to: userSSHConfig) }

    /// `[tunnels.NAME]` with a -L forward from C's loopback to the HTTP service on B, through A.
    func webTunnel(_ name: String, port: Int, host: String = "lab", probe: String = "http") -> String {
        "[tunnels.\(name)]\nhost = \"\(host)\"\nlocal = \"\(port):\(Topology.serviceName):\(Self.webPort)\"\nprobe = \"\(probe)\"\n\n"
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["FWD_CONFIG"] = configPath
        env["FWD_STATE_DIR"] = stateDir
        env["FWD_SSH_CONFIG"] = userSSHConfig
        env["FWD_TEMPLATES"] = FwdBinary.packageRoot + "/templates"
        env["NO_COLOR"] = "1"
        env["FWD_PROBE_INTERVAL"] = probeInterval.map { String($0) }
        return env
    }

    // MARK: running fwd in C

    @discardableResult
    func fwd(_ arguments: String..., timeout: Double = 60) throws -> FwdRun {
        try fwd(arguments: arguments, timeout: timeout)
    }

    func fwd(arguments: [String], timeout: Double = 60) throws -> FwdRun {
        let child = try spawnFwd(arguments)
        guard let status = child.process.waitExit(timeout: timeout) else {
            child.process.kill()
            throw CommandFailed(description: "fwd \(arguments.joined(separator: " ")) did not finish in \(timeout) s")
        }
        defer {
            unlink(child.out)
            unlink(child.err)
        }
        return FwdRun(status: status, stdout: FileSystem.read(child.out) ?? "", stderr: FileSystem.read(child.err) ?? "")
    }

    /// Starts `fwd ARGS` inside C without waiting; stdout and stderr go to separate files.
    func spawnFwd(_ arguments: [String]) throws -> (process: ChildProcess, out: String, err: String) {
        let id = UUID().uuidString.prefix(8)
        let out = "\(dir)/run-\(id).out", err = "\(dir)/run-\(id).err"
        let script = "exec \"$0\" \"$@\" 2>\"\(err)\""
        let process = try ChildProcess(topology.exec(topology.c, ["/bin/sh", "-c", script, Self.binary] + arguments),
                                       outputPath: out, environment: environment)
        return (process, out, err)
    }

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

    /// Polls every 10 ms until `condition` holds; the seconds it took, or nil after `timeout`.
    @discardableResult
    func waitUntil(timeout: Double, _ condition: () -> Bool) -> Double? {
        let start = Date()
        while true {
            if condition() { return Date().timeIntervalSince(start) }
            if Date().timeIntervalSince(start) >= timeout { return nil }
            usleep(10_000)
        }
    }

    @discardableResult
    func waitForState(_ name: String, _ state: TunnelState, timeout: Double = 20) -> Double? {
        waitUntil(timeout: timeout) { self.state(name) == state }
    }

    /// An HTTP GET from inside C.
    func fetch(port: Int, timeout: Double = 2) -> HTTPResponse? {
        try? inNamespace(topology.c) { try HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: timeout) }
    }

    /// Whether something accepts on 127.0.0.1:port inside C.
    func isAccepting(port: Int) -> Bool {
        (try? inNamespace(topology.c) { LocalPort.isAccepting(port: port, timeout: 0.5) }) ?? false
    }

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
final class BannerServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var stopped = false
    private let finished = DispatchSemaphore(value: 0)
    static let greeting = "220 svc-b ready\r\n"

    init(host: String, port: Int) throws {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        self.fd = fd
        guard bound == 0, listen(fd, 64) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw CommandFailed(description: "banner server cannot listen on \(host):\(port): \(reason)")
        }
        self.port = port
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    private func acceptLoop() {
        defer { finished.signal() }
        while !lock.withLock({ stopped }) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) == 1 else { continue }
            let conn = accept(fd, nil, nil)
            guard conn >= 0 else { continue }
            _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
            _ = Self.greeting.withCString { send(conn, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            close(conn)
        }
    }

    func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        finished.wait()
        close(fd)
    }
}
