#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import FwdCore

package enum LabError: Error, CustomStringConvertible {
    case sshdNotFound(String)
    case toolFailed(command: String, output: String)
    case directory(path: String, reason: String)
    case invalidConfig(path: String, output: String)
    case sshdExited(port: Int, status: String, logTail: String)
    case sshdStartTimeout(port: Int, logTail: String)
    case socket(String)
    case httpConnect(host: String, port: Int, reason: String)
    case httpTimeout(host: String, port: Int, phase: String)
    case httpNoResponse(host: String, port: Int, detail: String)
    case httpMalformed(host: String, port: Int, detail: String)

    package var description: String {
        switch self {
        case .sshdNotFound(let path):
            "sshd not found at \(path) — install openssh-server (apt-get install openssh-server)"
        case .toolFailed(let command, let output):
            "`\(command)` failed — is the OpenSSH client installed (apt-get install openssh-client)?\n\(output)"
        case .directory(let path, let reason):
            "cannot prepare lab directory \(path): \(reason) — choose a writable directory"
        case .invalidConfig(let path, let output):
            "sshd rejected the lab config \(path) (check the extra config lines):\n\(output)"
        case .sshdExited(let port, let status, let logTail):
            "lab sshd on 127.0.0.1:\(port) exited during start-up (\(status)); is the port already in use? Its log says:\n\(logTail)"
        case .sshdStartTimeout(let port, let logTail):
            "lab sshd did not start listening on 127.0.0.1:\(port) within 5 s; its log says:\n\(logTail)"
        case .socket(let message):
            message
        case .httpConnect(let host, let port, let reason):
            "cannot connect to \(host):\(port): \(reason) — is the server or tunnel up?"
        case .httpTimeout(let host, let port, let phase):
            "timed out waiting for \(host):\(port) (\(phase)) — the server or tunnel is not answering"
        case .httpNoResponse(let host, let port, let detail):
            "no HTTP response from \(host):\(port) (\(detail)) — the port accepted the connection but nothing answered behind it"
        case .httpMalformed(let host, let port, let detail):
            "not an HTTP response from \(host):\(port): \(detail)"
        }
    }
}

/// A private OpenSSH server on 127.0.0.1 with its own keys and config, for integration tests and `fwd demo`.
package final class LabSSHD: @unchecked Sendable {
    package static let sshdPath = "/usr/sbin/sshd"

    package let dir: String
    package let port: Int
    package let clientKey: String
    package let knownHosts: String
    package let logPath: String
    package let user: String
    package let configPath: String
    /// The sshd binary, or a symlink to it: sshd names its PAM service after the name it was started by.
    package let executable: String
    /// The one address sshd listens on: 127.0.0.1, or another loopback address (127.0.0.2) to stand in for a
    /// server whose sshd listens on its LAN address only.
    package let address: String

    private let lock = NSLock()
    private var child: ChildProcess?

    /// Generates keys (kept if already in `dir`), sshd_config and known_hosts, and validates the config with `sshd -t`.
    /// Plain `extraConfig` lines go before the defaults, because sshd keeps the first value it reads for a keyword;
    /// from the first `Match` line on they go at the end, where Match blocks must be.
    package init(dir: String, port: Int? = nil, address: String = "127.0.0.1", extraConfig: [String] = [],
                executable: String = LabSSHD.sshdPath) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw LabError.sshdNotFound(executable)
        }
        self.executable = executable
        let dir = URL(fileURLWithPath: dir).standardizedFileURL.path
        self.dir = dir
        self.address = address
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
            if geteuid() == 0 {
                // Root sshd insists on its privilege-separation dir ("Missing privilege separation directory").
                try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o755])
            }
        } catch {
            throw LabError.directory(path: dir, reason: error.localizedDescription)
        }

        self.port = try port ?? LocalPort.free()
        self.user = getpwuid(geteuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
            ?? ProcessInfo.processInfo.environment["USER"] ?? "root"
        clientKey = dir + "/client_ed25519"
        knownHosts = dir + "/known_hosts"
        logPath = dir + "/sshd.log"
        configPath = dir + "/sshd_config"
        let hostKey = dir + "/hostkey"

        for key in [hostKey, clientKey] where !FileManager.default.fileExists(atPath: key) {
            let argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fwd-lab", "-f", key]
            let (exit, output) = try ChildProcess.run(argv)
            guard exit == .exited(0) else {
                throw LabError.toolFailed(command: argv.joined(separator: " "), output: output)
            }
        }

        try Self.write(try String(contentsOfFile: clientKey + ".pub", encoding: .utf8), to: dir + "/authorized_keys")
        let hostPub = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8)
            .split(separator: " ").prefix(2).joined(separator: " ")
        try Self.write("[\(address)]:\(self.port) \(hostPub)\n", to: knownHosts)

        let matchStart = extraConfig.firstIndex { $0.trimmingCharacters(in: .whitespaces).lowercased().hasPrefix("match ") }
            ?? extraConfig.endIndex
        let defaults = [
            "ListenAddress \(address)",
            "HostKey \(Self.quote(hostKey))",
            "PidFile \(Self.quote(dir + "/sshd.pid"))",
            "AuthorizedKeysFile \(Self.quote(dir + "/authorized_keys"))",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StreamLocalBindUnlink yes",
            "ClientAliveInterval 5",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding yes",
            "GatewayPorts no",
            "LogLevel VERBOSE",
        ]
        let lines = extraConfig[..<matchStart] + defaults + extraConfig[matchStart...]
        try Self.write(lines.joined(separator: "\n") + "\n", to: configPath)

        let (exit, output) = try ChildProcess.run([executable, "-t", "-f", configPath, "-p", String(self.port)])
        guard exit == .exited(0) else {
            throw LabError.invalidConfig(path: configPath, output: output.isEmpty ? exit.description : output)
        }
    }

    deinit { stop() }

    package var isRunning: Bool { lock.withLock { child?.isRunning ?? false } }

    package var pid: Int32? { lock.withLock { child?.isRunning == true ? child?.pid : nil } }

    /// Starts sshd in the foreground (-D) as our child and waits until it listens. Idempotent.
    /// Readiness comes from sshd's own "Server listening" log line rather than a probe connection,
    /// so the log holds only the connections tests make.
    package func start() throws {
        try lock.withLock {
            if child?.isRunning == true { return }
            let logOffset = (try? FileManager.default.attributesOfItem(atPath: logPath)[.size] as? Int) ?? 0
            // Absolute path: sshd re-execs itself and refuses to run otherwise.
            let argv = [executable, "-D", "-e", "-f", configPath, "-p", String(port), "-E", logPath]
            let proc = try ChildProcess(argv, outputPath: logPath)
            child = proc
            let ready = "Server listening on \(address) port \(port)."
            let deadline = Date().addingTimeInterval(5)
            while true {
                if let exit = proc.exitStatus {
                    child = nil
                    throw LabError.sshdExited(port: port, status: exit.description, logTail: logTail(from: logOffset))
                }
                if logSince(logOffset).contains(ready) { return }
                if Date() >= deadline {
                    proc.kill()
                    child = nil
                    throw LabError.sshdStartTimeout(port: port, logTail: logTail(from: logOffset))
                }
                usleep(20_000)
            }
        }
    }

    /// SIGTERM, then SIGKILL after 2 s; always reaps. sshd serves each connection in its own setsid'd
    /// process, which outlives the listener (as on a real server restart); unless `keepSessions`,
    /// those are ended first so tunnels really drop and nothing is orphaned.
    package func stop(keepSessions: Bool = false) {
        lock.withLock {
            guard let proc = child else { return }
            child = nil
            if !keepSessions, proc.isRunning { endSessions(of: proc.pid, signal: SIGTERM) }
            proc.terminate()
            if proc.waitExit(timeout: 2) == nil { proc.kill() }
        }
    }

    /// SIGKILL and reap, simulating a crash; established sessions get SIGKILL too unless `keepSessions`.
    package func kill(keepSessions: Bool = false) {
        lock.withLock {
            guard let proc = child else { return }
            child = nil
            if !keepSessions, proc.isRunning { endSessions(of: proc.pid, signal: SIGKILL) }
            proc.kill()
        }
    }

    private func endSessions(of listener: pid_t, signal sig: Int32) {
        let sessions = Self.childPids(of: listener)
        for pid in sessions {
            sendSignal(-pid, sig) // the session's group, including its privsep child
            sendSignal(pid, sig)  // in case it hasn't called setsid yet
        }
        // Give the still-running listener time to reap them, so none becomes init's zombie.
        let deadline = Date().addingTimeInterval(2)
        while Date() < deadline, sessions.contains(where: { sendSignal($0, 0) == 0 }) { usleep(10_000) }
    }

    private static func childPids(of parent: pid_t) -> [pid_t] {
        #if os(Linux)
        return ProcessTable.children(of: parent)
        #else
        let output = (try? ChildProcess.run(["pgrep", "-P", String(parent)], timeout: 5).output) ?? ""
        return output.split(whereSeparator: \.isNewline).compactMap { pid_t($0) }
        #endif
    }

    /// The whole sshd log (empty if none yet).
    package func log() -> String { logSince(0) }

    package func clientConfigBlock(alias: String) -> String {
        """
        Host \(alias)
            HostName \(address)
            Port \(port)
            User \(user)
            IdentityFile \(Self.quote(clientKey))
            IdentitiesOnly yes
            UserKnownHostsFile \(Self.quote(knownHosts))
            StrictHostKeyChecking yes
            BatchMode yes

        """
    }

    private func logSince(_ offset: Int) -> String {
        guard let handle = FileHandle(forReadingAtPath: logPath) else { return "" }
        defer { try? handle.close() }
        try? handle.seek(toOffset: UInt64(offset))
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    private func logTail(from offset: Int) -> String {
        let lines = logSince(offset).split(separator: "\n").suffix(15)
        return lines.isEmpty ? "(log is empty: \(logPath))" : lines.joined(separator: "\n")
    }

    private static func quote(_ path: String) -> String {
        path.contains(where: { $0 == " " || $0 == "\t" }) ? "\"\(path)\"" : path
    }

    private static func write(_ text: String, to path: String) throws {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw LabError.directory(path: path, reason: error.localizedDescription)
        }
    }
}
