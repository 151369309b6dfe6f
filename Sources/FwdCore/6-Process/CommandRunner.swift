import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Subprocess

/// What a finished short-lived command left behind.
package struct CommandResult: Sendable, Equatable {
    /// The exit code, or 128 + signal number when it was killed.
    package var status: Int32
    package var stdout: String
    package var stderr: String
}

/// The process layer: every ssh fwd runs goes through here, on swift-subprocess, which reports every exit on
/// time even while long-running ssh children exist (Foundation.Process does not on Linux:
/// docs/architecture.md, "Child processes"). Short
/// commands (`ssh -G`, `ssh -O …`, a transport check) `run`; supervised ones (a master) `start`. Children that
/// must outlive the call that made them (the detached supervisor, an editor on the terminal, the lab's sshd)
/// are `ChildProcess`es: swift-subprocess ties a child's life to a task's scope.
package enum CommandRunner {
    /// Starts a long-lived command with stderr appended to `stderr` (closed here once spawned) and `environment`
    /// added to fwd's own; with `newSession`, in a session of its own (no controlling terminal). Returns once the
    /// process exists, with its pid and a task that ends with its exit status (128 + signal when killed).
    /// Cancelling that task ends the process: SIGTERM, then SIGKILL after 2 s.
    package static func start(_ command: SSHCommand, environment: [String: String] = [:], stderr fd: Int32,
                              newSession: Bool) async throws -> (pid: Int32, exit: Task<Int32, Never>) {
        let (pids, pidSink) = AsyncStream<Int32>.makeStream()
        var options = PlatformOptions()
        options.teardownSequence = [.gracefulShutDown(allowedDurationToNextStep: .seconds(2))]
        options.createSession = newSession
        let env = Environment.inherit.updating(Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), Optional($0.value)) }))
        let exit = Task<Int32, Never> {
            do {
                let result = try await Subprocess.run(
                    command.subprocessExecutable, arguments: Arguments(command.arguments), environment: env,
                    workingDirectory: command.workingDirectory.map { .init($0) }, platformOptions: options,
                    input: .none, output: .discarded, error: .fileDescriptor(.init(rawValue: fd), closeAfterSpawningProcess: true)
                ) { execution in
                    pidSink.yield(execution.processIdentifier.value)
                    pidSink.finish()
                }
                return result.terminationStatus.code
            } catch {
                pidSink.finish()
                let line = "fwd: cannot start \(command.executable): \(error)\n"
                _ = line.withCString { write(fd, $0, strlen($0)) }
                return 127
            }
        }
        var pid: Int32 = -1
        for await p in pids { pid = p }
        guard pid > 0 else {
            _ = await exit.value
            throw SSHResolveError.launch("\(command.executable) could not be started")
        }
        return (pid, exit)
    }

    package static func run(_ command: SSHCommand, timeout: Duration = .seconds(15)) async throws -> CommandResult {
        try await withThrowingTaskGroup(of: CommandResult?.self) { group in
            group.addTask {
                let result = try await Subprocess.run(
                    command.subprocessExecutable,
                    arguments: Arguments(command.arguments),
                    workingDirectory: command.workingDirectory.map { .init($0) },
                    input: .none,
                    output: .string(limit: 1 << 20),
                    error: .string(limit: 1 << 20)
                )
                return CommandResult(status: result.terminationStatus.code, stdout: result.standardOutput, stderr: result.standardError)
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            // The first to finish wins; cancelling the other tears the child down (SIGTERM, then SIGKILL).
            let first = try await group.next()!
            group.cancelAll()
            guard let result = first else { throw CommandTimeout(command: command, timeout: timeout) }
            return result
        }
    }
}

package struct CommandTimeout: Error, CustomStringConvertible {
    package var command: SSHCommand
    package var timeout: Duration
    package var description: String { "`\(command)` did not finish within \(timeout)" }
}

extension SSHCommand {
    /// A path is run as given; a bare name is looked up in PATH.
    var subprocessExecutable: Executable {
        executable.contains("/") ? .path(.init(executable)) : .name(executable)
    }
}

extension TerminationStatus {
    /// The exit code, or 128 + the signal number, as a shell reports it.
    var code: Int32 {
        switch self {
        case .exited(let code): Int32(code)
        case .signaled(let signal): 128 + Int32(signal)
        }
    }
}
