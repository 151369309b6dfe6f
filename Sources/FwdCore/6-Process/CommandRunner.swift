import Foundation
import Subprocess

/// What a finished short-lived command left behind.
package struct CommandResult: Sendable, Equatable {
    /// The exit code, or 128 + signal number when it was killed.
    package var status: Int32
    package var stdout: String
    package var stderr: String
}

/// Runs short-lived commands (`ssh -G`, `ssh -O …`) through swift-subprocess, which reports every exit on time
/// even while long-running ssh children exist (Foundation.Process does not on Linux: DESIGN.md).
package enum CommandRunner {
    package static func run(_ command: SSHCommand, timeout: Duration = .seconds(15)) async throws -> CommandResult {
        try await withThrowingTaskGroup(of: CommandResult?.self) { group in
            group.addTask {
                let executable: Executable = command.executable.contains("/") ? .path(.init(command.executable)) : .name(command.executable)
                let result = try await Subprocess.run(
                    executable,
                    arguments: Arguments(command.arguments),
                    input: .none,
                    output: .string(limit: 1 << 20),
                    error: .string(limit: 1 << 20)
                )
                let status: Int32
                switch result.terminationStatus {
                case .exited(let code): status = Int32(code)
                case .signaled(let signal): status = 128 + Int32(signal)
                }
                return CommandResult(status: status, stdout: result.standardOutput, stderr: result.standardError)
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
