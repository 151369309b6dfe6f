import Foundation

/// Asks the server something through a live master and waits a short while for any answer: proof that the
/// master's TCP connection still carries data, which `ssh -O check` (a local question) cannot give.
enum TransportCheck {
    struct Outcome: Sendable, Equatable {
        /// The server answered through the master.
        var answered: Bool
        var seconds: Double
    }

    /// The answer the server gives a channel it cannot open; anything else (ssh's own "Control socket" or
    /// ProxyCommand errors) means the master did not carry the request.
    static func isServerAnswer(_ stderr: String) -> Bool {
        stderr.contains("open failed") || stderr.contains("Stdio forwarding request failed")
    }

    static func run(ssh: String, socket: String, timeout: Double) async -> Outcome {
        let start = Date()
        let command = SSHCommand.transportCheck(ssh: ssh, socket: socket)
        let result = try? await CommandRunner.run(command, timeout: .milliseconds(Int(timeout * 1000)))
        return Outcome(answered: result.map { isServerAnswer($0.stderr) } ?? false, seconds: Date().timeIntervalSince(start))
    }

    /// How long to wait for the answer: 300 ms, or three times what a check took on this master right after it
    /// connected (a slow link's round trip), so latency is not mistaken for a dead path.
    static func timeout(baseline: Double?) -> Double {
        max(0.3, 3 * (baseline ?? 0))
    }
}
