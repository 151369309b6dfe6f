import Foundation
import FwdCore
import FwdLab
#if canImport(Glibc)
import Glibc
#endif

/// The output and exit status of one run of the real `fwd` binary.
package struct FwdRun: Sendable {
    package var status: ChildExit
    package var stdout: String
    package var stderr: String
    package var ok: Bool { status == .exited(0) }

    package init(status: ChildExit, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// The `fwd` binary the tests run: the one `swift build` produced, or FWD_BIN.
package enum FwdBinary {
    /// The package root, found from this file.
    package static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    package static var path: String {
        if let override = ProcessInfo.processInfo.environment["FWD_BIN"], !override.isEmpty { return override }
        return packageRoot + "/.build/debug/fwd"
    }
}

/// A test's private fwd world: its own config, state directory and "user" ssh_config under `dir`, where the
/// real `fwd` binary runs and is watched. This is the fixture core both test targets share: running fwd and
/// other commands with the world's environment, writing config, reading status, waiting for a state, fetching
/// through a forwarded port, finding and stopping what runs. A fixture adds its own servers, and says where
/// fwd runs (here, or in a network namespace) and how it reads a tunnel's state.
package protocol FwdWorld: AnyObject, Sendable {
    /// The world's private directory: config/, state/, home/.ssh/ and commands' output live in it.
    var dir: String { get }
    /// FWD_PROBE_INTERVAL for fwd in this world; nil leaves fwd's default.
    var probeInterval: Double? { get }
    /// The state of tunnel `name` now, as this world reads it (`fwd status --json`, or the database).
    func state(_ name: String) -> TunnelState?
    /// Seconds between two readings of `state` while waiting for one: reading through `fwd status` costs a
    /// process, reading the database a query.
    var statePollInterval: Double { get }
    /// `argv` as it must be run to run inside this world (default: as it is).
    func placed(_ argv: [String]) -> [String]
    /// Runs `body` where this world's fwd runs, so the sockets it opens live there (default: on this thread).
    func inPlace<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T
}

/// A fixture's own failure (a command that hangs, a socket that cannot listen), with what went wrong.
package struct SupportError: Error, CustomStringConvertible {
    package var description: String
    package init(description: String) { self.description = description }
}

/// Waiting for something a test cannot be told about, by looking again.
package enum Poll {
    /// Polls every `interval` seconds until `condition` holds; the seconds it took, or nil after `timeout`.
    @discardableResult
    package static func until(timeout: Double, every interval: Double = 0.01, _ condition: () -> Bool) -> Double? {
        let start = Date()
        while true {
            if condition() { return Date().timeIntervalSince(start) }
            if Date().timeIntervalSince(start) >= timeout { return nil }
            usleep(useconds_t(interval * 1_000_000))
        }
    }
}

/// A command started in a world: its process, and the files its stdout and stderr go to.
package struct WorldCommand {
    package var process: ChildProcess
    package var out: String
    package var err: String
}

extension FwdWorld {
    package static var binary: String { FwdBinary.path }

    package var configPath: String { dir + "/config/fwd.toml" }
    package var stateDir: String { dir + "/state" }
    package var userSSHConfig: String { dir + "/home/.ssh/config" }
    package var paths: FwdPaths { FwdPaths(config: configPath, stateDirectory: stateDir, userSSHConfig: userSSHConfig) }

    package func placed(_ argv: [String]) -> [String] { argv }

    package func inPlace<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T { try body() }

    /// Makes `dir` and the private directories the config and the user's ssh_config go in.
    package static func makeDirectories(_ dir: String) throws {
        try FileSystem.makePrivateDirectory(dir + "/config")
        try FileSystem.makePrivateDirectory(dir + "/home/.ssh")
    }

    // MARK: configuration

    package func write(config: String) throws { try FileSystem.writeAtomically(config, to: configPath) }

    package func write(userSSHConfig text: String) throws { try FileSystem.writeAtomically(text, to: userSSHConfig) }

    /// The environment fwd runs with in this world: its own config, state and ssh_config, the package's
    /// templates, no colour.
    package var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["FWD_CONFIG"] = configPath
        env["FWD_STATE_DIR"] = stateDir
        env["FWD_SSH_CONFIG"] = userSSHConfig
        env["FWD_TEMPLATES"] = FwdBinary.packageRoot + "/templates"
        env["NO_COLOR"] = "1"
        env["FWD_PROBE_INTERVAL"] = probeInterval.map { String($0) }
        return env
    }

    /// The environment changed by `changes` (a nil value removes a variable).
    package func environment(_ changes: [String: String?]) -> [String: String] {
        var env = environment
        for (key, value) in changes { env[key] = value }
        return env
    }

    // MARK: running

    /// Runs `fwd ARGS` in this world and waits for it.
    @discardableResult
    package func fwd(_ arguments: String..., timeout: Double = 60) throws -> FwdRun {
        try fwd(arguments: arguments, timeout: timeout)
    }

    package func fwd(arguments: [String], environment changes: [String: String?] = [:], timeout: Double = 60) throws -> FwdRun {
        try run([Self.binary] + arguments, environment: changes, timeout: timeout)
    }

    /// Runs any command in this world with its environment changed by `changes`, and waits for it.
    package func run(_ argv: [String], environment changes: [String: String?] = [:], timeout: Double = 60) throws -> FwdRun {
        let command = try spawn(argv, environment: changes)
        defer {
            unlink(command.out)
            unlink(command.err)
        }
        guard let status = command.process.waitExit(timeout: timeout) else {
            command.process.kill()
            throw SupportError(description: "\(argv.joined(separator: " ")) did not finish in \(timeout) s")
        }
        return FwdRun(status: status, stdout: FileSystem.read(command.out) ?? "", stderr: FileSystem.read(command.err) ?? "")
    }

    /// Starts a command in this world without waiting; stdout and stderr go to separate files in `dir`.
    package func spawn(_ argv: [String], environment changes: [String: String?] = [:]) throws -> WorldCommand {
        let id = UUID().uuidString.prefix(8)
        let out = "\(dir)/run-\(id).out", err = "\(dir)/run-\(id).err"
        // ChildProcess sends stdout and stderr to one file; run through sh to keep them apart.
        let script = "exec \"$0\" \"$@\" 2>\"\(err)\""
        let process = try ChildProcess(placed(["/bin/sh", "-c", script] + argv), outputPath: out, environment: environment(changes))
        return WorldCommand(process: process, out: out, err: err)
    }

    // MARK: observing

    /// The row for `name` as `fwd status --json` reports it.
    package func reportedStatus(_ name: String) throws -> [String: Any]? {
        let run = try fwd("status", "--json")
        let rows = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [[String: Any]]
        return rows?.first { $0["name"] as? String == name }
    }

    /// Polls every `interval` seconds until `condition` holds; the seconds it took, or nil after `timeout`.
    @discardableResult
    package func waitUntil(timeout: Double, every interval: Double = 0.01, _ condition: () -> Bool) -> Double? {
        Poll.until(timeout: timeout, every: interval, condition)
    }

    /// Polls until `name` reaches `state`; the seconds it took, or nil on timeout.
    @discardableResult
    package func waitForState(_ name: String, _ state: TunnelState, timeout: Double = 20) -> Double? {
        waitUntil(timeout: timeout, every: statePollInterval) { self.state(name) == state }
    }

    /// One HTTP GET on 127.0.0.1:`port` where this world's fwd runs, within `timeout`.
    package func fetch(port: Int, timeout: Double = 2) -> HTTPResponse? {
        try? inPlace { try HTTPGet.fetch(host: "127.0.0.1", port: port, timeout: timeout) }
    }

    /// An HTTP GET through a forwarded port, retried while the forward comes up (each attempt within 3 s).
    package func fetchRetrying(port: Int, timeout: Double = 10) -> HTTPResponse? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let response = fetch(port: port, timeout: 3) { return response }
            usleep(100_000)
        }
        return nil
    }

    /// Whether something accepts on `host`:`port` where this world's fwd runs, right now.
    package func isAccepting(port: Int, host: String = "127.0.0.1") -> Bool {
        (try? inPlace { LocalPort.isAccepting(host: host, port: port, timeout: 0.5) }) ?? false
    }

    /// Waits until `host`:`port` accepts connections.
    package func waitForPort(_ port: Int, host: String = "127.0.0.1", timeout: Double = 10) -> Bool {
        waitUntil(timeout: timeout, every: 0.05) { isAccepting(port: port, host: host) } != nil
    }

    // MARK: processes

    /// Live (non-zombie) processes whose command line matches.
    package func processes(where match: ([String]) -> Bool) -> [Int32] {
        ProcessTable.allPids().filter { pid in
            let cmd = ProcessTable.commandLine(of: pid)
            return !cmd.isEmpty && match(cmd) && ProcessTable.state(of: pid) != "Z"
        }
    }

    /// Every ssh process of this world: each names a socket in its control directory.
    package func sshProcesses() -> [Int32] {
        let control = paths.controlDirectory
        return processes { cmd in (cmd.first?.hasSuffix("ssh") ?? false) && cmd.contains { $0.hasPrefix(control) } }
    }

    /// The ControlMasters (`ssh … -M …`) of this world.
    package func masters() -> [Int32] {
        let control = paths.controlDirectory
        return processes { cmd in (cmd.first?.hasSuffix("ssh") ?? false) && cmd.contains("-M") && cmd.contains { $0.hasPrefix(control) } }
    }

    /// `fwd daemon` and `fwd run` processes serving this world's state directory.
    package func supervisorProcesses() -> [Int32] {
        let binary = URL(fileURLWithPath: FwdBinary.path).resolvingSymlinksInPath().path
        let marker = "FWD_STATE_DIR=\(paths.stateDirectory)"
        return processes { cmd in
            cmd.count >= 2 && URL(fileURLWithPath: cmd[0]).resolvingSymlinksInPath().path == binary && ["daemon", "run"].contains(cmd[1])
        }.filter { pid in
            let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") ?? Data()
            return environ.split(separator: 0).contains { String(decoding: $0, as: UTF8.self) == marker }
        }
    }

    /// Ends what a test left running, for teardown: the supervisors (given `grace` seconds), then every ssh
    /// using this world's sockets.
    package func stopEverything(supervisorGrace grace: Double) {
        for pid in supervisorProcesses() { ProcessTable.terminate(pid, grace: grace) }
        for pid in sshProcesses() { ProcessTable.terminate(pid, grace: 0.5) }
    }

    /// Removes the world's files: its directory and fwd's control directory.
    package func removeFiles() {
        try? FileManager.default.removeItem(atPath: paths.controlDirectory)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

extension ProcessTable {
    /// User plus system CPU time `pid` has used, from /proc/PID/stat (fields 14 and 15).
    package static func cpuSeconds(of pid: Int32) -> Double? {
        guard let stat = FileSystem.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The real uid of `pid`, from /proc/PID/status.
    package static func uid(of pid: Int32) -> UInt32? {
        let line = FileSystem.read("/proc/\(pid)/status")?.split(separator: "\n").first { $0.hasPrefix("Uid:") }
        return line?.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().first.flatMap { UInt32($0) }
    }
}
