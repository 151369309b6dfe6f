import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the OS says about processes and ports, for reaping stale masters and naming who holds a port.
package enum ProcessTable {
    /// The process start time (clock ticks since boot, /proc/PID/stat field 22) — with the pid it identifies a
    /// process even after the pid is reused. nil when the process does not exist (or on systems without /proc).
    package static func startTime(of pid: Int32) -> UInt64? {
        statFields(of: pid).flatMap { $0.count > 19 ? UInt64($0[19]) : nil }
    }

    /// The process state letter of /proc/PID/stat ("R", "S", "Z" for a zombie…); nil when there is no such process.
    package static func state(of pid: Int32) -> String? { statFields(of: pid)?.first.map(String.init) }

    /// The parent's pid; nil when there is no such process.
    package static func parent(of pid: Int32) -> Int32? { statFields(of: pid).flatMap { $0.count > 1 ? Int32($0[1]) : nil } }

    /// Every pid in /proc (empty on systems without it).
    package static func allPids() -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init)
    }

    package static func children(of parent: Int32) -> [Int32] {
        allPids().filter { self.parent(of: $0) == parent }
    }

    /// The fields of /proc/PID/stat after the command name (which may contain spaces and parentheses): the state
    /// is [0], the parent [1], the start time [19].
    private static func statFields(of pid: Int32) -> [Substring]? {
        guard let stat = FileSystem.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(after: close)...].split(separator: " ")
    }

    package static func commandLine(of pid: Int32) -> [String] {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    package static func isAlive(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    /// The process listening on a local TCP port, as "name (pid N)", when /proc tells (Linux, own processes or root).
    package static func holder(ofPort port: Int) -> String? {
        listener(onPort: port).map { "\($0.name) (pid \($0.pid))" }
    }

    /// The process listening on a local TCP port, when /proc tells (Linux, own processes or root).
    package static func listener(onPort port: Int) -> (pid: Int32, name: String)? {
        var inodes = Set<String>()
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            guard let text = readAll(file) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let cols = line.split(separator: " ")
                // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
                guard cols.count > 9, cols[3] == "0A", let colon = cols[1].lastIndex(of: ":"),
                      Int(cols[1][cols[1].index(after: colon)...], radix: 16) == port else { continue }
                inodes.insert(String(cols[9]))
            }
        }
        guard !inodes.isEmpty else { return nil }
        for pid in allPids() {
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { continue }
            for fd in fds {
                guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                      link.hasPrefix("socket:["), inodes.contains(String(link.dropFirst(8).dropLast())) else { continue }
                let name = FileSystem.read("/proc/\(pid)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                return (pid, name)
            }
        }
        return nil
    }

    /// A /proc file read to its end: they report size 0, and `String(contentsOfFile:)` stops after the first
    /// chunk (about 4 KB, some 27 sockets of /proc/net/tcp), which missed listeners on a busy machine.
    static func readAll(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    /// Sends SIGTERM, waits up to `grace` seconds for the process to vanish, then SIGKILL. For processes that are
    /// not our children (a master left by a supervisor that was SIGKILLed), so it polls rather than waits.
    package static func terminate(_ pid: Int32, grace: Double = 2) {
        guard pid > 1 else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while isAlive(pid), Date() < deadline { usleep(20_000) }
        if isAlive(pid) { kill(pid, SIGKILL) }
    }
}
