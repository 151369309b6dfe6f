import Foundation
import Subprocess

/// The `remote` probe: `ssh -W host:port` through the master reaches a -R listener from the server's side.
/// Exit 255 = the listener (or the master) is gone; exit 0 with no bytes = the listener is up but the client-side
/// target refused; still running at the deadline, or any bytes = up.
struct RemoteStreamProbe: Sendable {
    var command: SSHCommand
    /// host:port as ssh -W gets it, for messages.
    var target: String
    var deadline: ContinuousClock.Instant

    /// How long past the deadline ssh may take to report before it is killed regardless.
    static let slack: Duration = .seconds(1)

    private enum Stream: Sendable, Equatable {
        case bytes, closed, deadline
    }

    func run() async -> ProbeOutcome {
        await withTaskGroup(of: ProbeOutcome?.self) { group in
            group.addTask { await self.spawn() }
            group.addTask {
                try? await Task.sleep(until: deadline + Self.slack, clock: .continuous)
                return nil
            }
            let first = await group.next() ?? nil
            // Cancelling the run makes swift-subprocess kill and reap ssh, so nothing outlives the probe.
            group.cancelAll()
            await group.waitForAll()
            return first ?? .noAnswer("`\(command)` neither answered nor exited in time")
        }
    }

    private func spawn() async -> ProbeOutcome {
        let executable: Executable = command.executable.contains("/") ? .path(.init(command.executable)) : .name(command.executable)
        let deadline = self.deadline
        do {
            // stdin stays an open pipe until the body returns: with /dev/null ssh would send EOF at once, and a
            // healthy target may close on that, which would read as "target refused".
            let result = try await Subprocess.run(
                executable,
                arguments: Arguments(command.arguments),
                input: .inputWriter,
                output: .sequence,
                error: .string(limit: 64 * 1024)
            ) { execution in
                await withTaskGroup(of: Stream.self) { group in
                    group.addTask {
                        do {
                            for try await chunk in execution.standardOutput where !chunk.isEmpty {
                                return .bytes
                            }
                        } catch {}
                        return .closed
                    }
                    group.addTask {
                        try? await Task.sleep(until: deadline, clock: .continuous)
                        return .deadline
                    }
                    let first = await group.next() ?? .deadline
                    if first != .closed {
                        // The answer is known; when ssh dies, swift-subprocess also ends the pending stdout read.
                        try? execution.send(signal: .kill)
                    }
                    group.cancelAll()
                    await group.waitForAll()
                    return first
                }
            }
            switch result.closureResult {
            case .bytes, .deadline:
                return .up
            case .closed:
                let stderr = Self.summary(result.standardError)
                switch result.terminationStatus {
                case .exited(0):
                    return .targetDown("the server's listener on \(target) is up but the forward's local target refused")
                case .exited(255):
                    return .listenerDown("the server's listener on \(target) or the master is gone" + (stderr.isEmpty ? "" : ": \(stderr)"))
                case .exited(let code):
                    return .listenerDown("`\(command)` exited with \(code)" + (stderr.isEmpty ? "" : ": \(stderr)"))
                case .signaled(let signal):
                    return .listenerDown("`\(command)` was killed by signal \(signal)")
                }
            }
        } catch {
            return .listenerDown("could not run `\(command)`: \(error)")
        }
    }

    /// ssh's stderr lines end in "\r\n"; keep them on one line for a status message.
    static func summary(_ stderr: String) -> String {
        let lines = stderr.split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        let text = lines.joined(separator: "; ")
        return text.count > 300 ? String(text.prefix(300)) + "…" : text
    }
}
