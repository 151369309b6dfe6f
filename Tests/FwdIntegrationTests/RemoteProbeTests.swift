import Foundation
import Testing
@testable import FwdCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `remote` probe against a private sshd and a real ControlMaster: `ssh -W` through the master tells a
/// working -R forward from one whose local target refused and from one that is gone.
@Suite struct RemoteProbeTests {
    @Test func remoteProbeTellsUpFromTargetDownFromListenerDown() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(banner: "hello\n")
            let remotePort = try freePort()
            let spec = try ForwardSpec.parse("127.0.0.1:\(remotePort):127.0.0.1:\(target.port)", kind: .remote)
            try await lab.mux(.forward(spec))
            let probe = HealthProbe(kind: .remote, timeout: 2, controlSocket: lab.socket)

            // The target answers: the first byte proves the round trip, well before the timeout.
            let answered = await probe.run(spec)
            #expect(answered.outcome == .up)
            #expect(answered.latencyMs > 0)
            try lab.expectNoProbeLeftBehind()

            // A target that accepts but stays silent is up once the timeout passes without an EOF.
            target.stopAccepting()
            let silent = await probe.run(spec)
            #expect(silent.outcome == .up)
            #expect(silent.latencyMs >= 1900, "up only once the timeout passed without an EOF")
            try lab.expectNoProbeLeftBehind()

            target.close()
            let refused = await probe.run(spec)
            guard case .targetDown(let message) = refused.outcome else {
                Issue.record("expected targetDown with nothing on the local target, got \(refused.outcome)")
                return
            }
            #expect(message.contains("127.0.0.1:\(remotePort)"))
            try lab.expectNoProbeLeftBehind()

            try await lab.mux(.cancel(spec))
            let gone = await probe.run(spec)
            guard case .listenerDown(let reason) = gone.outcome else {
                Issue.record("expected listenerDown after -O cancel, got \(gone.outcome)")
                return
            }
            #expect(reason.contains("127.0.0.1:\(remotePort)"))
            try lab.expectNoProbeLeftBehind()
        }
    }

    @Test func aServerAllocatedPortIsProbedThroughAllocatedPort() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(banner: "hello\n")
            defer { target.close() }
            let spec = try ForwardSpec.parse("127.0.0.1:0:127.0.0.1:\(target.port)", kind: .remote)
            let added = try await lab.mux(.forward(spec))
            let allocated = try #require(Int(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)),
                                         "-O forward -R 0:… prints the allocated port, got \(String(reflecting: added.stdout))")
            let probe = HealthProbe(kind: .remote, timeout: 2, controlSocket: lab.socket)
            #expect(await probe.run(spec, allocatedPort: allocated).outcome == .up)
            try lab.expectNoProbeLeftBehind()
        }
    }
}

/// A private sshd on 127.0.0.1 and a ControlMaster to it, both torn down when `with` returns or throws.
private struct RemoteProbeLab {
    let directory: String
    let socket: String

    static func with(_ body: (RemoteProbeLab) async throws -> Void) async throws {
        let sshd = "/usr/sbin/sshd"
        guard FileManager.default.isExecutableFile(atPath: sshd) else {
            Issue.record("\(sshd) is missing: install openssh-server (apt-get install openssh-server) to run the remote probe tests")
            return
        }
        // Short: the master binds SOCK + 17 characters, and a ControlPath may be at most ~90 bytes.
        let directory = try makeTemporaryDirectory("/tmp/fwd-rp-XXXXXX")
        var children: [ChildProcess] = []
        defer {
            for child in children.reversed() { child.terminate() }
            try? FileManager.default.removeItem(atPath: directory)
        }

        for key in ["hostkey", "id_ed25519"] {
            try await run("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", "\(directory)/\(key)"])
        }
        try FileManager.default.copyItem(atPath: "\(directory)/id_ed25519.pub", toPath: "\(directory)/authorized_keys")
        try """
            ListenAddress 127.0.0.1
            HostKey \(directory)/hostkey
            PidFile \(directory)/sshd.pid
            AuthorizedKeysFile \(directory)/authorized_keys
            StrictModes no
            UsePAM no
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            AllowTcpForwarding yes
            ClientAliveInterval 5

            """.write(toFile: "\(directory)/sshd_config", atomically: true, encoding: .utf8)
        if getuid() == 0 {
            // sshd started as root refuses to run without its privilege-separation directory.
            try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true)
        }

        let port = try freePort()
        let server = try ChildProcess(sshd, ["-D", "-e", "-f", "\(directory)/sshd_config", "-p", "\(port)"], log: "\(directory)/sshd.log")
        children.append(server)
        try await waitUntil("sshd listens on 127.0.0.1:\(port)", log: server.log) {
            guard server.isRunning else { throw LabError("sshd exited:\n\(server.logText)") }
            return canConnect(port: port)
        }

        let hostKey = try String(contentsOfFile: "\(directory)/hostkey.pub", encoding: .utf8)
        try "[127.0.0.1]:\(port) \(hostKey)".write(toFile: "\(directory)/known_hosts", atomically: true, encoding: .utf8)
        let socket = "\(directory)/m.sock"
        let master = try ChildProcess("/usr/bin/ssh", [
            "-F", "none", "-N", "-M", "-S", socket,
            "-o", "ControlPersist=no", "-o", "BatchMode=yes",
            "-o", "UserKnownHostsFile=\(directory)/known_hosts", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-i", "\(directory)/id_ed25519",
            "-p", "\(port)", "-l", currentUser(), "127.0.0.1",
        ], log: "\(directory)/master.log")
        children.append(master)
        let lab = RemoteProbeLab(directory: directory, socket: socket)
        try await waitUntil("the master answers -O check", log: master.log) {
            guard master.isRunning else { throw LabError("the master exited:\n\(master.logText)\nsshd:\n\(server.logText)") }
            return (try? await CommandRunner.run(SSHCommand.mux(socket: socket, .check), timeout: .seconds(5)))?.status == 0
        }

        try await body(lab)
    }

    @discardableResult
    func mux(_ operation: SSHCommand.MuxOperation) async throws -> CommandResult {
        let result = try await CommandRunner.run(SSHCommand.mux(socket: socket, operation))
        guard result.status == 0 else { throw LabError("`\(SSHCommand.mux(socket: socket, operation))` exited \(result.status): \(result.stderr)") }
        return result
    }

    /// No `ssh -W` for this lab still runs, and no ssh child of the test is left as a zombie.
    func expectNoProbeLeftBehind() throws {
        for _ in 0..<10 {
            let leftovers = childProcesses().filter { ($0.commandLine.contains("-W") && $0.commandLine.contains(socket)) || ($0.state == "Z" && $0.name == "ssh") }
            if leftovers.isEmpty { return }
            usleep(100_000)
        }
        let leftovers = childProcesses().filter { ($0.commandLine.contains("-W") && $0.commandLine.contains(socket)) || ($0.state == "Z" && $0.name == "ssh") }
        #expect(leftovers.isEmpty, "probe processes left behind: \(leftovers)")
    }
}

// MARK: - Helpers

private struct LabError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private func run(_ executable: String, _ arguments: [String]) async throws {
    let result = try await CommandRunner.run(SSHCommand(executable: executable, arguments: arguments))
    guard result.status == 0 else { throw LabError("\(executable) \(arguments) exited \(result.status): \(result.stderr)") }
}

private func waitUntil(_ what: String, log: String, seconds: Double = 10, _ ready: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        if try await ready() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw LabError("timed out waiting until \(what); log \(log):\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
}

private func makeTemporaryDirectory(_ pattern: String) throws -> String {
    var template = Array(pattern.utf8CString)
    guard let path = mkdtemp(&template) else { throw LabError("mkdtemp \(pattern): \(String(cString: strerror(errno)))") }
    return String(cString: path)
}

private func currentUser() -> String {
    guard let entry = getpwuid(getuid()) else { return "root" }
    return String(cString: entry.pointee.pw_name)
}

/// A long-lived child (sshd, the master) started with posix_spawn, stdout and stderr going to a log file.
/// `terminate()` sends SIGTERM, then SIGKILL after 3 s, and reaps it.
private final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    let log: String
    private let lock = NSLock()
    private var exited = false

    init(_ path: String, _ arguments: [String], log: String) throws {
        self.log = log
        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t? = nil
        var attributes: posix_spawnattr_t? = nil
        #else
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        // A clean signal mask and default SIGTERM/SIGPIPE, whatever thread the test runs on.
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) }
        let environment = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") }
        defer { (argv + environment).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv + [nil], environment + [nil])
        guard rc == 0 else { throw LabError("posix_spawn \(path): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    var isRunning: Bool {
        lock.withLock {
            if exited { return false }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { exited = true }
            return !exited
        }
    }

    var logText: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    func terminate() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        for _ in 0..<60 {
            if !isRunning { return }
            usleep(50_000)
        }
        kill(pid, SIGKILL)
        lock.withLock {
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
            exited = true
        }
    }
}

/// A TCP listener on 127.0.0.1 standing in for the forward's local target. Until `stopAccepting()` it greets
/// every connection with `banner`; after that connections still complete in the kernel's backlog but stay silent.
private final class TestListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var accepting = true
    private var closed = false
    private var connections: [Int32] = []
    private let acceptorDone = DispatchSemaphore(value: 0)

    init(banner: String) throws {
        (fd, port) = try listeningSocket()
        Thread.detachNewThread { [self] in
            defer { acceptorDone.signal() }
            while lock.withLock({ accepting }) {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 20) > 0 else { continue }
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { continue }
                _ = Array(banner.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, noSignal) }
                lock.withLock { connections.append(connection) }
            }
        }
    }

    func stopAccepting() {
        let wasAccepting = lock.withLock {
            defer { accepting = false }
            return accepting
        }
        if wasAccepting { acceptorDone.wait() }
    }

    func close() {
        stopAccepting()
        lock.withLock {
            guard !closed else { return }
            closed = true
            connections.forEach { _ = systemClose($0) }
            _ = systemClose(fd)
        }
    }

    deinit { close() }
}

private func listeningSocket() throws -> (Int32, Int) {
    let fd = socket(AF_INET, socketStream, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, 16) == 0 ? getsockname(fd, $0, &length) : -1
        }
    }
    guard rc == 0 else {
        let code = errno
        _ = systemClose(fd)
        throw LabError("cannot listen on 127.0.0.1: \(String(cString: strerror(code)))")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

/// A port that was free a moment ago (bind 0, read it, close).
private func freePort() throws -> Int {
    let (fd, port) = try listeningSocket()
    _ = systemClose(fd)
    return port
}

private func canConnect(port: Int) -> Bool {
    let fd = socket(AF_INET, socketStream, 0)
    defer { _ = systemClose(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

private struct ChildInfo: CustomStringConvertible {
    var pid: Int32
    var name: String
    var state: String
    var commandLine: String
    var description: String { "\(pid) \(state) \(name) \(commandLine)" }
}

/// This process's children, from /proc (Linux); empty elsewhere.
private func childProcesses() -> [ChildInfo] {
    let me = getpid()
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    return entries.compactMap { entry -> ChildInfo? in
        guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, Int32(fields[1]) == me else { return nil }
        let raw = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
        let commandLine = String(decoding: raw.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
        return ChildInfo(pid: pid, name: String(stat[stat.index(after: open)..<close]), state: String(fields[0]), commandLine: commandLine)
    }
}

#if canImport(Darwin)
private let socketStream = SOCK_STREAM
private let noSignal: Int32 = 0
#else
private let socketStream = Int32(SOCK_STREAM.rawValue)
private let noSignal = Int32(MSG_NOSIGNAL)
#endif

private func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Darwin)
    Darwin.close(fd)
    #else
    Glibc.close(fd)
    #endif
}
