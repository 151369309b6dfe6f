import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One running `ssh -N -M` process, spawned and watched through swift-subprocess (pidfd on Linux, so its exit
/// is seen on time even while other ssh children run: docs/architecture.md, "Child processes"). Its stderr is appended to `logPath`.
package final class ControlMaster: Sendable {
    package let command: SSHCommand
    package let socket: String
    package let logPath: String
    /// Where this run's stderr starts in the log, so classification reads only this run's lines.
    package let logOffset: UInt64
    /// Where this run's lines start now: `logOffset`, or 0 once `capLog` truncated the file under the running ssh.
    private let runStart: Locked<UInt64>
    package let pid: Int32
    package let startedAt: Date
    private let exit: Task<Int32, Never>

    private init(command: SSHCommand, socket: String, logPath: String, logOffset: UInt64, pid: Int32, exit: Task<Int32, Never>) {
        self.command = command
        self.socket = socket
        self.logPath = logPath
        self.logOffset = logOffset
        self.runStart = Locked(logOffset)
        self.pid = pid
        self.startedAt = Date()
        self.exit = exit
    }

    /// Spawns the master through the process layer (`CommandRunner.start`). Returns once the process exists (not once it is connected: `HostRunner.connect` waits for the socket).
    /// `environment` is added to fwd's own (an `AskpassRelay`'s variables for a master that may prompt). The master
    /// runs in a session of its own, with no controlling terminal: ssh never reads the user's terminal itself.
    package static func spawn(_ command: SSHCommand, socket: String, logPath: String,
                             environment: [String: String] = [:]) async throws -> ControlMaster {
        LogFile.rotateIfFull(logPath)
        let fd = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError.failed(path: logPath, action: "open", errno: errno) }
        fchmod(fd, 0o600)
        let offset = UInt64(max(0, lseek(fd, 0, SEEK_END)))
        let pid: Int32
        let exit: Task<Int32, Never>
        do {
            (pid, exit) = try await CommandRunner.start(command, environment: environment, stderr: fd, newSession: true)
        } catch {
            throw SSHResolveError.launch("\(command.executable) could not be started (see \(logPath))")
        }
        return ControlMaster(command: command, socket: socket, logPath: logPath, logOffset: offset, pid: pid, exit: exit)
    }

    /// Waits for the process to end and returns its exit status (128+signal when killed).
    package func waitExit() async -> Int32 { await exit.value }

    /// Waits until the control socket exists (true) or the process has exited (false). ssh binds a temporary
    /// name, listens, and only then links the ControlPath, all after authentication: the path existing means
    /// the master takes requests. On Linux the directory is watched with inotify, so nothing polls.
    package func waitForSocket() async -> Bool {
        let socket = self.socket
        let watch = Task { await Self.appearance(of: socket) }
        // Awaiting a task's value cannot be cancelled: this one lingers until ssh exits, and only cancels the watch.
        Task { [exit] in
            _ = await exit.value
            watch.cancel()
        }
        await watch.value
        return FileSystem.exists(socket)
    }

    /// Returns once `path` exists, or when the task is cancelled.
    private static func appearance(of path: String) async {
        // Checked once the watch is in place (the first call), so a socket linked in between is not missed.
        let watched = await DirectoryWatch.watch((path as NSString).deletingLastPathComponent, for: [.created, .movedIn]) { _ in
            !FileSystem.exists(path)
        }
        if watched { return }
        // Elsewhere (or without inotify): poll, finely while a normal login completes, then coarser.
        let start = Date()
        while !Task.isCancelled, !FileSystem.exists(path) {
            try? await Task.sleep(for: .milliseconds(Date().timeIntervalSince(start) < 1 ? 2 : 25))
        }
    }

    /// The end of ssh's stderr from this run (at most `LogFile.tailLimit` bytes): never a line of an earlier run,
    /// never the whole file.
    package func stderr() -> String {
        runStart.withLock { LogFile.tail(logPath, from: $0) }
    }

    /// Keeps the log within `LogFile.cap` while this ssh writes to it (docs/reliability.md, "Per-host ssh logs");
    /// cheap when it is not full (one lstat). Called at each probe round.
    package func capLog() {
        runStart.withLock { start in
            if LogFile.truncateIfFull(logPath) { start = 0 }
        }
    }

    /// SIGTERM; the supervisor awaits `waitExit`. The process is our unreaped child until then, so the pid
    /// cannot have been reused.
    package func terminate() {
        kill(pid, SIGTERM)
    }

    /// Ends the process and waits: SIGTERM, then SIGKILL after `grace` seconds.
    package func stop(grace: Double = 2) async {
        terminate()
        let exit = self.exit
        let killer = Task {
            try await Task.sleep(for: .seconds(grace))
            kill(pid, SIGKILL)
        }
        _ = await exit.value
        killer.cancel()
    }
}
