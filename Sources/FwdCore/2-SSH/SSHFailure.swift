import Foundation

/// What an ssh failure means for the supervisor.
package enum FailureClass: String, Sendable, Equatable, Codable {
    /// Authentication, host key or configuration: retrying cannot help and would hammer the server.
    case fatal
    /// The network or the server: retry with backoff.
    case retry
    /// A local port is taken: only the tunnel that wants it fails.
    case localConflict
    /// The server still holds an old -R listener: retry a few times, then give up with advice.
    case remoteListener
}

/// A classified ssh failure with a message that ends with what to do.
package struct SSHFailure: Error, Sendable, Equatable, CustomStringConvertible {
    package var failureClass: FailureClass
    /// The ssh line that decided the class (trimmed), or the exit status when no line matched.
    package var evidence: String
    package var advice: String

    package var description: String { "\(evidence) — \(advice)" }

    /// The one table from ssh's stderr to a class (docs/architecture.md, "Failure classes"). First match wins; order matters where one
    /// failure prints several of these lines.
    static let table: [(needle: String, failureClass: FailureClass, advice: String)] = [
        ("REMOTE HOST IDENTIFICATION HAS CHANGED", .fatal,
         "the server's host key changed; verify it with the server's owner, then remove the old key with `ssh-keygen -R HOST`"),
        ("Host key verification failed", .fatal,
         "the server's host key is unknown or changed; connect once with `ssh HOST` to check and accept it, then retry"),
        ("Permission denied (", .fatal,
         "authentication failed; check the user and key (`ssh -v HOST`), load the key into your agent, then `fwd up` again"),
        ("Too many authentication failures", .fatal,
         "the server refused after too many keys; set `identity` for this host (IdentitiesOnly), then retry"),
        ("Bad configuration option", .fatal, "fix the ssh_config option named above, then retry"),
        ("no argument after keyword", .fatal, "fix the ssh_config line named above, then retry"),
        ("bad configuration options", .fatal, "fix the ssh_config lines named above, then retry"),
        ("Bad local forwarding specification", .fatal, "fix the forward spec in fwd.toml"),
        ("Bad remote forwarding specification", .fatal, "fix the forward spec in fwd.toml"),
        ("Bad dynamic forwarding specification", .fatal, "fix the forward spec in fwd.toml"),
        ("Could not resolve hostname", .retry, "the host name does not resolve; fwd keeps retrying — check the name and your DNS"),
        ("Temporary failure in name resolution", .retry, "name resolution failed; fwd keeps retrying"),
        ("remote port forwarding failed for listen port", .remoteListener,
         "the server still holds that port (often an old session's listener); fwd retries until the server frees it"),
        ("Address already in use", .localConflict, "another program holds the port; stop it or pick another port"),
        ("cannot listen to port", .localConflict, "another program holds the port; stop it or pick another port"),
        ("Could not request local forwarding", .localConflict, "another program holds the port; stop it or pick another port"),
        ("Port forwarding failed", .localConflict, "the master could not listen on the port; stop what holds it or pick another port"),
        ("Connection refused", .retry, "nothing listens on the SSH port; fwd retries with backoff"),
        ("Connection timed out", .retry, "the SSH server did not answer; fwd retries with backoff"),
        ("Operation timed out", .retry, "the SSH server did not answer; fwd retries with backoff"),
        ("Network is unreachable", .retry, "no route to the server; fwd retries with backoff"),
        ("No route to host", .retry, "no route to the server; fwd retries with backoff"),
        ("not responding", .retry, "the server stopped answering keepalives; fwd reconnects"),
        ("closed by remote host", .retry, "the server closed the connection; fwd reconnects"),
        ("Connection reset", .retry, "the connection was reset; fwd reconnects"),
        ("Broken pipe", .retry, "the connection broke; fwd reconnects"),
        ("kex_exchange_identification", .retry, "the server closed the connection during the handshake; fwd retries"),
    ]

    /// The row's advice, made exact where ssh's own lines say more: for a changed host key, ssh prints the
    /// `ssh-keygen -f FILE -R NAME` that removes the old key, with `[host]:port` when the port is not 22.
    static func advice(_ row: (needle: String, failureClass: FailureClass, advice: String), lines: [Substring]) -> String {
        if row.needle == "Permission denied (", let line = lines.first(where: { $0.contains(row.needle) }) {
            return loginAdvice(methods: line)
        }
        guard row.needle == "REMOTE HOST IDENTIFICATION HAS CHANGED" else { return row.advice }
        let trimmed = lines.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let remove = trimmed.first { $0.hasPrefix("ssh-keygen ") && $0.contains(" -R ") && !$0.contains("`") }
            ?? trimmed.lazy.compactMap { line -> String? in
                guard line.hasPrefix("Host key for "), let end = line.range(of: " has changed") else { return nil }
                let name = line[line.index(line.startIndex, offsetBy: 13)..<end.lowerBound]
                return name.isEmpty || name.contains("'") ? nil : "ssh-keygen -R '\(name)'"
            }.first
        guard let remove else { return row.advice }
        return "the server's host key changed; verify it with the server's owner, then remove the old key with `\(remove)`"
    }

    /// `Permission denied (publickey,password).` lists what the server accepts: a key is advised only when a key
    /// is all it takes, and a password or code server is told how fwd asks for one.
    static func loginAdvice(methods line: Substring) -> String {
        let methods = line.split(separator: "(").last?.split(separator: ")").first?.split(separator: ",").map(String.init) ?? []
        let person = methods.filter { $0 == "password" || $0 == "keyboard-interactive" }
        guard !person.isEmpty else {
            return "authentication failed; check the user and key (`ssh -v HOST`), load the key into your agent, then `fwd up` again"
        }
        let what = person == ["keyboard-interactive"] ? "an answer to its question (a password or one-time code)" : "a password"
        let key = methods.contains("publickey") ? ", or log in with a key it accepts (in ssh-agent)" : ""
        return "the server wants \(what): run `fwd up NAME` on a terminal and type it when asked\(key); check the user name too"
    }

    /// Classifies an ssh run from its stderr and exit status. An exit with no recognisable line is retried:
    /// giving up on an unknown message would leave a tunnel down that a reconnect would fix.
    package static func classify(stderr: String, status: Int32) -> SSHFailure {
        // "channel N: open failed: connect failed: Connection refused" is about one forwarded connection (a target
        // that is down, fwd's transport check), never about the master's own connection.
        let lines = stderr.split(whereSeparator: \.isNewline).filter { !($0.hasPrefix("channel ") && $0.contains(": open failed: ")) }
        for row in table {
            if let line = lines.first(where: { $0.contains(row.needle) }) {
                return SSHFailure(failureClass: row.failureClass,
                                  evidence: String(line.trimmingCharacters(in: .whitespaces).prefix(300)),
                                  advice: advice(row, lines: lines))
            }
        }
        let last = lines.map { String($0.trimmingCharacters(in: .whitespaces).prefix(300)) }.last { !$0.isEmpty }
        return SSHFailure(failureClass: .retry, evidence: last ?? "ssh exited with status \(status)",
                          advice: "fwd retries with backoff; `fwd logs` shows ssh's messages")
    }
}
