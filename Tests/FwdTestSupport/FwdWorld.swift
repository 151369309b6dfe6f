import Foundation
import FwdCore

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

/// A test's private fwd world (its own state directory): what runs in it, found in /proc.
package protocol FwdWorld {
    var paths: FwdPaths { get }
}

extension FwdWorld {
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
