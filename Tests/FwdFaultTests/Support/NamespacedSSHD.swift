import Foundation
@testable import FwdCore
import FwdLab
#if canImport(Glibc)
import Glibc
#endif

/// A private OpenSSH server inside namespace A, listening on A's address (LabSSHD listens on 127.0.0.1 only).
/// Same throwaway keys and settings as LabSSHD; started with `ip netns exec`, which execs sshd, so the child we
/// hold is sshd itself.
final class NamespacedSSHD: @unchecked Sendable {
    let dir: String
    let namespace: String
    let address: String
    let ports: [Int]
    let clientKey: String
    let hostKey: String
    let knownHosts: String
    let logPath: String
    let configPath: String
    private let lock = NSLock()
    private var child: ChildProcess?

    init(dir: String, namespace: String, address: String = Topology.serverAddress, ports: [Int] = [22],
         clientAliveInterval: Int = 5, clientAliveCountMax: Int = 3, gatewayPorts: String = "no",
         extraAddresses: [String] = []) throws {
        self.dir = dir
        self.namespace = namespace
        self.address = address
        self.ports = ports
        try FileSystem.makePrivateDirectory(dir)
        try FileManager.default.createDirectory(atPath: "/run/sshd", withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        clientKey = dir + "/client_ed25519"
        hostKey = dir + "/hostkey"
        knownHosts = dir + "/known_hosts"
        logPath = dir + "/sshd.log"
        configPath = dir + "/sshd_config"
        for key in [hostKey, clientKey] {
            try run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fwd-fault", "-f", key])
        }
        try FileSystem.writeAtomically(try String(contentsOfFile: clientKey + ".pub", encoding: .utf8), to: dir + "/authorized_keys")
        let hostPub = try String(contentsOfFile: hostKey + ".pub", encoding: .utf8).split(separator: " ").prefix(2).joined(separator: " ")
        // Port 22 is written as the bare name, any other as [name]:port (what ssh looks up).
        let entries = ports.map { $0 == 22 ? Topology.serverName : "[\(Topology.serverName)]:\($0)" }
        try FileSystem.writeAtomically(entries.map { "\($0) \(hostPub)\n" }.joined(), to: knownHosts)
        let config = ports.map { "Port \($0)" } + [
            "ListenAddress \(address)",
            // As on most servers, sshd also answers on the server's loopback, where the socks probe of a -D
            // forward connects through the proxy.
            "ListenAddress 127.0.0.1",
        ] + extraAddresses.map { "ListenAddress \($0)" } + [
            "HostKey \(hostKey)",
            "PidFile \(dir)/sshd.pid",
            "AuthorizedKeysFile \(dir)/authorized_keys",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StreamLocalBindUnlink yes",
            "ClientAliveInterval \(clientAliveInterval)",
            "ClientAliveCountMax \(clientAliveCountMax)",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding yes",
            // A stock sshd's default: -R listeners stay on the server's loopback whatever the client asks.
            "GatewayPorts \(gatewayPorts)",
            "MaxStartups 100",
            "LogLevel VERBOSE",
        ]
        try FileSystem.writeAtomically(config.joined(separator: "\n") + "\n", to: configPath)
        try run(["/usr/sbin/sshd", "-t", "-f", configPath])
    }

    deinit { kill() }

    /// Rewrites the `GatewayPorts` line; a running sshd reads it at its next start (`kill`, then `start`).
    func setGatewayPorts(_ value: String) throws {
        let lines = (FileSystem.read(configPath) ?? "").split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("GatewayPorts ") ? "GatewayPorts \(value)" : String($0) }
        try FileSystem.writeAtomically(lines.joined(separator: "\n"), to: configPath)
        try run(["/usr/sbin/sshd", "-t", "-f", configPath])
    }

    var pid: Int32? { lock.withLock { child?.isRunning == true ? child?.pid : nil } }

    /// Starts sshd and waits until its log says it listens on every port.
    func start() throws {
        try lock.withLock {
            if child?.isRunning == true { return }
            let offset = log().utf8.count
            let proc = try ChildProcess(["ip", "netns", "exec", namespace, "/usr/sbin/sshd", "-D", "-e", "-f", configPath, "-E", logPath])
            child = proc
            let deadline = Date().addingTimeInterval(10)
            while true {
                let lines = String(log().utf8.dropFirst(offset)) ?? ""
                if ports.allSatisfy({ lines.contains("Server listening on \(address) port \($0).") && lines.contains("Server listening on 127.0.0.1 port \($0).") }) {
                    return
                }
                if let exit = proc.exitStatus {
                    child = nil
                    throw CommandFailed(description: "sshd in \(namespace) exited at start (\(exit)): \(lines)")
                }
                if Date() >= deadline {
                    proc.kill()
                    child = nil
                    throw CommandFailed(description: "sshd in \(namespace) did not listen within 10 s: \(lines)")
                }
                usleep(5_000)
            }
        }
    }

    /// SIGKILL the listener and every session it forked (a crash or a reboot of the server), and reap it.
    func kill() {
        lock.withLock {
            guard let proc = child else { return }
            child = nil
            let sessions = ProcessTable.children(of: proc.pid)
            for pid in sessions {
                Glibc.kill(-pid, SIGKILL)
                Glibc.kill(pid, SIGKILL)
            }
            proc.kill()
            // The sessions were the listener's children; with it gone, init reaps them.
            let deadline = Date().addingTimeInterval(2)
            while Date() < deadline, sessions.contains(where: { Glibc.kill($0, 0) == 0 && ProcessTable.state(of: $0) != "Z" }) { usleep(5_000) }
        }
    }

    func log() -> String { FileSystem.read(logPath) ?? "" }

    /// Lines of sshd's log that record a TCP connection from the client namespace to `port`.
    func connections(toPort port: Int = 22) -> Int {
        // "Connection from 198.18.1.1 port 41234 on 198.18.1.2 port 22 rdomain """
        log().split(separator: "\n").filter {
            $0.contains("Connection from \(Topology.clientAddress) port ") && $0.contains(" on \(address) port \(port) ")
        }.count
    }
}

/// What the soak test samples of a process (the rest of /proc is `ProcessTable`'s).
enum ProcessInfoLite {
    /// Open descriptors (entries of /proc/PID/fd).
    static func fdCount(_ pid: Int32) -> Int? { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd"))?.count }

    /// Resident set size in kB (VmRSS of /proc/PID/status).
    static func rssKB(_ pid: Int32) -> Int? {
        guard let status = FileSystem.read("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}
