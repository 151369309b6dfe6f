import Foundation

/// What `HostMachine` decided, as typed reasons, and the words a person reads for each. The machine says what
/// happened; this file says it to the user. `SSHFailure` (2-SSH) words what ssh itself printed.
///
/// Tests (unit and integration, which read the real binary's output) hold these strings byte for byte.

/// Why logging in to a host again needs a person: the machine makes no attempt until the user acts.
enum NeedsAuthCause: Sendable, Equatable {
    /// The person cancelled at the prompt (Ctrl-C).
    case cancelledAtTerminal
    /// fwd ended a master a person had logged in, because its network path was gone.
    case pathChanged(String)
    /// A master a person had logged in dropped; `evidence` is ssh's line.
    case connectionLost(evidence: String)

    func words(host: String) -> String {
        switch self {
        case .cancelledAtTerminal: "the login to \(host) was cancelled at the terminal"
        case .pathChanged(let reason): "the network path to \(host) changed (\(reason))"
        case .connectionLost(let evidence): "the connection to \(host) was lost (\(evidence))"
        }
    }

    /// A needs-auth tunnel's error: what happened (`why`, as `words(host:)` put it) and what to run.
    static func error(_ why: String, tunnel name: String) -> String {
        "\(why); logging in again needs a person: run `fwd up \(name)` on a terminal (a key in ssh-agent lets fwd reconnect by itself)"
    }
}

/// Why one tunnel cannot come up on its own while its host is fine.
enum TunnelFailure: Sendable, Equatable {
    /// The local port (or socket) of one of its forwards is held by another program (`holder`, when known). Not a
    /// failure that waits for the user: the tunnel checks again (`Backoff.localPort`) and comes up once it frees.
    case localPortTaken(ForwardSpec, holder: String?)
    /// The server kept refusing a -R listener: the tunnel is failed until the user asks for it again.
    /// (An old session still holds it) through `retries` retries; `evidence` is ssh's line.
    case remoteListenerHeld(evidence: String, retries: Int)

    /// The tunnel's error: what is wrong and what to do.
    func error(tunnel name: String) -> String {
        switch self {
        case .localPortTaken(let spec, let holder):
            let held = holder.map { " (held by \($0))" } ?? ""
            if case .unix = spec.listen {
                return "\(Self.port(spec)) is already taken\(held): move it, or change the path in \(name)'s \(spec.kind.rawValue) forward; fwd takes it once it is free"
            }
            return "\(Self.port(spec)) is already in use\(held): stop that program or change the port in \(name)'s \(spec.kind.rawValue) forward; fwd takes it once it is free"
        case .remoteListenerHeld(let evidence, _):
            return "\(evidence) — the server kept refusing; check what listens on that port on the server (or lower its ClientAliveInterval), then `fwd up \(name)`"
        }
    }

    /// The tunnel's state message.
    var summary: String {
        switch self {
        case .localPortTaken(let spec, _): "cannot listen on \(Self.port(spec))"
        case .remoteListenerHeld(_, let retries): "gave up after \(retries) retries"
        }
    }

    private static func port(_ spec: ForwardSpec) -> String {
        if case .unix(let path) = spec.listen { return path }
        return spec.listenPort.map { "local port \($0)" } ?? "the local socket"
    }
}

/// Why a public forward is degraded: it works on loopback, but the clients it is shared with cannot reach it.
extension Sharing.Gap {
    /// The tunnel's error: the cause and the fix.
    var error: String {
        switch self {
        case .serverLoopbackOnly(let port):
            "the server keeps port \(port) on its loopback (sshd GatewayPorts no): ask for GatewayPorts clientspecified, or reach it through the server"
        case .localAddressRefused(let address, let port):
            "\(Sharing.place(address, port)) does not accept, though loopback does: a firewall on this machine may block it; check it, or share another address"
        }
    }

    /// The tunnel's state message.
    var summary: String {
        switch self {
        case .serverLoopbackOnly: "the forward works on the server's loopback only, not where it is shared"
        case .localAddressRefused: "the forward works on loopback only, not where it is shared"
        }
    }
}

/// The line a `pathCheck` request gets (`fwd reconnect`), after the host's name.
enum PathAnswer: Sendable, Equatable {
    case noTunnelWanted
    /// The host failed and waits for the user; `advice` says what to do.
    case waitingForYou(advice: String)
    /// Logging in again needs a person, and a network event never starts a login.
    case needsYou
    case reconnecting
    case connecting
    /// fwd is already ending the master for its path.
    case restarting
    /// The trigger does not touch the master's path.
    case unchanged
    /// The server answered through the master within `ms`.
    case serverAnswers(ms: Int)
    /// The master went (its path checked or not): a new one is on its way.
    case masterGone
    /// fwd ended the master because of `reason`; a new one is on its way.
    case restarted(String)

    func line(host: String) -> String { "\(host): \(text)" }

    private var text: String {
        switch self {
        case .noTunnelWanted: "nothing to check (no tunnel wanted)"
        case .waitingForYou(let advice): "nothing to check (waiting for you: \(advice))"
        case .needsYou: "nothing to check (logging in again needs you: `fwd up` on a terminal)"
        case .reconnecting: "reconnecting"
        case .connecting: "connecting"
        case .restarting: "restarting"
        case .unchanged: "the path did not change"
        case .serverAnswers(let ms): "the server answers (\(ms) ms); nothing to do"
        case .masterGone: "the master is gone; reconnecting"
        case .restarted(let reason): "restarted (\(reason))"
        }
    }
}

/// Login failures the machine itself decides on (ssh printed nothing that says so), worded like the ones
/// `SSHFailure.classify` finds in ssh's stderr.
extension SSHFailure {
    /// A login on `host` needs `kind` from a person, and no terminal (no `fwd up` on one) can be asked.
    static func noTerminal(for kind: LoginPromptKind, host: String, tunnels names: [String]) -> SSHFailure {
        let up = "`fwd up \(names.joined(separator: " "))` on a terminal"
        let advice = switch kind {
        case .password: "run \(up) to type it, or log in with a key in ssh-agent (`ssh-add`)"
        case .keyPassphrase: "run \(up) to type it, or add the key to ssh-agent (`ssh-add KEYFILE`) so no prompt is needed"
        case .keyboardInteractive: "run \(up) to answer the server's question"
        case .hostKey: "run \(up) to check and accept the key, or add it to known_hosts first (`ssh \(host)` once)"
        case .other: "run \(up) to answer ssh's question"
        }
        return SSHFailure(failureClass: .fatal, evidence: "logging in to \(host) needs \(kind.noun) and no terminal is there to ask",
                          advice: advice)
    }

    /// The server refused what a person typed at the terminal, within ssh's own retries (3 for a password, a code
    /// or a passphrase) in one connection; `evidence` is ssh's line.
    static func typedAnswerRefused(_ kind: LoginPromptKind, evidence: String, tunnels names: [String]) -> SSHFailure {
        SSHFailure(failureClass: .fatal, evidence: evidence,
                   advice: "the server refused \(kind.noun) typed at the terminal; fwd does not try again by itself: `fwd up \(names.joined(separator: " "))` to try once more")
    }
}

/// Retries the user is told about: the state messages of a failed attempt, and the line `fwd up` ends with while a
/// tunnel is still being retried in the background.
package enum RetryWording {
    /// A connection attempt failed (its reason is the tunnel's error).
    static func attemptFailed(_ n: Int, retryIn delay: Double) -> String {
        "attempt \(n) failed; next try in \(seconds(delay))"
    }

    /// A forward's local port is in use; it is tried again after `delay`.
    static func portCheck(_ n: Int, retryIn delay: Double) -> String {
        "the port is in use (check \(n)); checking again in \(seconds(delay))"
    }

    /// What `fwd up` says of a tunnel that did not come up and is retried: after its reason, that fwd keeps
    /// trying, when, and how to stop it.
    package static func stillTrying(_ name: String, attempts: Int, next: Date?, now: Date = Date()) -> String {
        let when = nextTry(next, now: now) ?? "trying again now"
        let count = attempts > 0 ? " after \(attempts) failed attempt\(attempts == 1 ? "" : "s")" : ""
        return "fwd keeps trying in the background\(count) (\(when)); `fwd down \(name)` stops it"
    }

    /// "next try in 4 s" while a retry is due; nil when none is, or it is under way.
    package static func nextTry(_ next: Date?, now: Date = Date()) -> String? {
        guard let next, next > now else { return nil }
        return "next try in \(seconds(next.timeIntervalSince(now)))"
    }

    /// "4 s", "0.5 s".
    static func seconds(_ s: Double) -> String {
        s < 1 ? "\(Double(Int(s * 10)) / 10) s" : "\(Int(s.rounded())) s"
    }
}

extension SSHFailure {
    /// The host used up its `max_attempts`: not retried until the user asks again. `failure` is the last attempt's.
    static func gaveUp(_ failure: SSHFailure, attempts: Int, host: String, tunnels names: [String]) -> SSHFailure {
        SSHFailure(failureClass: .fatal, evidence: failure.evidence,
                   advice: "fwd gave up after \(attempts) failed attempts (max_attempts in [hosts.\(host)]); `fwd up \(names.joined(separator: " "))` tries again")
    }
}
