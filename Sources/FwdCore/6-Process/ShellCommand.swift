import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Subprocess

/// What a shell command line left behind.
package struct ShellOutcome: Sendable, Equatable {
    /// The exit code, or 128 + signal number when it was killed; nil when it could not be started.
    package var status: Int32?
    /// It ran past its timeout and its process group was ended.
    package var timedOut: Bool
    /// The end of what it wrote to stderr (at most `stderrLimit` bytes).
    package var stderr: String
    package var seconds: Double
}

/// Runs a command line the user wrote (a hook) with /bin/sh -c: the one place fwd runs a shell. Values reach
/// the command only through `environment`, never spliced into the line. The shell gets a session of its own
/// (no terminal; its process group is its own), so a timeout ends it and everything it started, not just the
/// shell. stderr goes to an unlinked temporary file rather than a pipe: a background job the command leaves
/// behind cannot keep the run from ending by holding a pipe open.
package enum ShellCommand {
    package static func run(_ line: String, environment: [String: String], timeout: Duration,
                            stderrLimit: Int = 2048) async -> ShellOutcome {
        let start = ContinuousClock.now
        func outcome(_ status: Int32?, timedOut: Bool, _ stderr: String) -> ShellOutcome {
            ShellOutcome(status: status, timedOut: timedOut, stderr: stderr, seconds: (ContinuousClock.now - start).inSeconds)
        }
        guard let file = tmpfile() else { return outcome(nil, timedOut: false, "cannot create a temporary file: \(Posix.errorText())") }
        defer { fclose(file) }
        let errFD = dup(fileno(file))
        guard errFD >= 0 else { return outcome(nil, timedOut: false, "dup(): \(Posix.errorText())") }
        let env = Environment.inherit.updating(Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(stringLiteral: $0.key), Optional($0.value)) }))
        let result: (status: Int32?, timedOut: Bool, failure: String?) = await withTaskGroup(of: (Int32?, Bool, String?)?.self) { group in
            group.addTask {
                var options = PlatformOptions()
                options.createSession = true
                options.teardownSequence = [.gracefulShutDown(toProcessGroup: true, allowedDurationToNextStep: .seconds(1))]
                do {
                    let r = try await Subprocess.run(.path("/bin/sh"), arguments: ["-c", line], environment: env, platformOptions: options,
                                                     input: .none, output: .discarded,
                                                     error: .fileDescriptor(.init(rawValue: errFD), closeAfterSpawningProcess: true))
                    return (r.terminationStatus.code, false, nil)
                } catch is CancellationError {
                    return nil
                } catch {
                    return (nil, false, "cannot start /bin/sh: \(error)")
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return Task.isCancelled ? nil : (nil, true, nil)
            }
            var first: (Int32?, Bool, String?)?
            while let next = await group.next() {
                if first == nil, let next {
                    first = next
                    // Cancelling the run ends the shell's process group: SIGTERM, then SIGKILL after 1 s.
                    group.cancelAll()
                }
            }
            return first ?? (nil, true, nil)
        }
        if let failure = result.failure { return outcome(nil, timedOut: false, failure) }
        return outcome(result.status, timedOut: result.timedOut, tail(of: fileno(file), limit: stderrLimit))
    }

    /// The last `limit` bytes of the file, as text.
    private static func tail(of fd: Int32, limit: Int) -> String {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return "" }
        let size = Int(st.st_size), count = min(size, limit)
        var bytes = [UInt8](repeating: 0, count: count)
        let n = pread(fd, &bytes, count, off_t(size - count))
        return String(decoding: bytes.prefix(max(0, n)), as: UTF8.self)
    }
}
