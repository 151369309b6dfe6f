import Foundation

/// Every ssh invocation fwd makes, as a value: an executable and an argv array, never a shell string.
/// This is the one place that builds ssh arguments; tests assert the argv without running anything.
package struct SSHCommand: Sendable, Equatable, CustomStringConvertible {
    package var executable: String
    package var arguments: [String]
    /// Where the command runs; nil: fwd's own working directory. Set only by `withConfig`.
    package var workingDirectory: String? = nil

    package var argv: [String] { [executable] + arguments }

    /// Shell-quoted, for showing to the user (`fwd show`), never for running.
    package var description: String { argv.map(Self.shellQuote).joined(separator: " ") }

    /// The mux commands fwd sends to a master.
    package enum MuxOperation: Sendable, Equatable {
        case forward(ForwardSpec)
        case cancel(ForwardSpec)
        case check
        case exit
    }

    /// How quickly a dead path is noticed; see `HostEntry.aliveInterval`.
    package struct Liveness: Sendable, Equatable {
        package var aliveInterval: Int
        package var aliveCount: Int
        package var connectTimeout: Int

        package init(aliveInterval: Int = HostEntry.defaultAliveInterval, aliveCount: Int = HostEntry.defaultAliveCount,
                    connectTimeout: Int = HostEntry.defaultConnectTimeout) {
            self.aliveInterval = aliveInterval
            self.aliveCount = aliveCount
            self.connectTimeout = connectTimeout
        }

        package init(_ host: HostEntry?) {
            self.init(aliveInterval: host?.aliveInterval ?? HostEntry.defaultAliveInterval,
                      aliveCount: host?.aliveCount ?? HostEntry.defaultAliveCount,
                      connectTimeout: host?.connectTimeout ?? HostEntry.defaultConnectTimeout)
        }
    }

    /// The name mux commands give as a destination; with `-F none` and `-S` it is never resolved or dialled.
    static let muxPlaceholder = "fwd-mux"

    /// The ControlMaster for one SSH host, kept in the foreground (`ControlPersist=no`: with `yes` the process
    /// started exits and a forked child becomes the master). Forwards are added later with `-O forward`.
    /// `batchMode: false` is for a master whose login may need a person (a password, a passphrase, a one-time
    /// code, a new host key): its prompts then go to `SSH_ASKPASS` (see `AskpassRelay`).
    package static func master(ssh: String = "ssh", config: String, destination: Destination, socket: String,
                              liveness: Liveness, batchMode: Bool = true) -> SSHCommand {
        withConfig(config, SSHCommand(executable: ssh, arguments: [
            "-N", "-M", "-S", socket,
            "-o", "ControlPersist=no",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "BatchMode=\(batchMode ? "yes" : "no")",
            "-o", "ServerAliveInterval=\(liveness.aliveInterval)",
            "-o", "ServerAliveCountMax=\(liveness.aliveCount)",
            "-o", "ConnectTimeout=\(liveness.connectTimeout)",
        ] + destination.arguments))
    }

    /// Characters a `-F` path may have as it is. ssh pastes the `-F` path unquoted into the command it builds
    /// from ProxyJump, expands `%` tokens in it and runs it with the shell (ssh.c; docs/architecture.md,
    /// "ssh_config quoting and % tokens"), so a space breaks every jump and a `$(…)` would run.
    static let shellSafe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,:@=".utf8)

    /// `command` with `-F config` in front. A config path outside `shellSafe` is given by its file name, and
    /// the command runs in the file's directory: the jump's ssh inherits that directory and finds it the same way.
    static func withConfig(_ config: String, _ command: SSHCommand) -> SSHCommand {
        var command = command
        guard config != "none", !config.utf8.allSatisfy(shellSafe.contains), config.hasPrefix("/") else {
            command.arguments = ["-F", config] + command.arguments
            return command
        }
        let name = (config as NSString).lastPathComponent
        command.arguments = ["-F", name] + command.arguments
        command.workingDirectory = (config as NSString).deletingLastPathComponent
        return command
    }

    /// A mux command to a running master. `-F none` keeps ssh from also sending the forwards of the host's
    /// config block (docs/architecture.md, "Mux commands"); the spec is sent with its explicit bind address so `cancel` repeats it exactly.
    package static func mux(ssh: String = "ssh", socket: String, _ operation: MuxOperation) -> SSHCommand {
        var arguments = ["-F", "none", "-S", socket, "-O"]
        switch operation {
        case .forward(let spec): arguments += ["forward", spec.kind.flag, spec.sshArgument]
        case .cancel(let spec): arguments += ["cancel", spec.kind.flag, spec.sshArgument]
        case .check: arguments += ["check"]
        case .exit: arguments += ["exit"]
        }
        return SSHCommand(executable: ssh, arguments: arguments + [muxPlaceholder])
    }

    /// `ssh -V`: prints the OpenSSH version on stderr.
    package static func version(ssh: String = "ssh") -> SSHCommand {
        SSHCommand(executable: ssh, arguments: ["-V"])
    }

    /// `ssh-keygen -F NAME -f FILE` (beside `ssh`): prints `# Host NAME found` and the entries for NAME, hashed
    /// ones included, and exits 0 when FILE has one.
    package static func findKnownHost(ssh: String = "ssh", name: String, file: String) -> SSHCommand {
        let beside = (ssh as NSString).deletingLastPathComponent + "/ssh-keygen"
        let keygen = ssh.contains("/") && access(beside, X_OK) == 0 ? beside : "ssh-keygen"
        return SSHCommand(executable: keygen, arguments: ["-F", name, "-f", file])
    }

    /// Asks ssh how it would connect to `destination` with fwd's config.
    package static func resolve(ssh: String = "ssh", config: String, destination: Destination) -> SSHCommand {
        withConfig(config, SSHCommand(executable: ssh, arguments: ["-G", "-T"] + destination.arguments))
    }

    /// An interactive or command session that rides the host's master (`fwd ssh HOST -- ARGS`).
    package static func session(ssh: String = "ssh", config: String, socket: String?, destination: Destination,
                               extra: [String]) -> SSHCommand {
        var arguments: [String] = []
        if let socket { arguments += ["-S", socket] }
        return withConfig(config, SSHCommand(executable: ssh, arguments: arguments + destination.arguments + extra))
    }

    package static func shellQuote(_ word: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,[]*".utf8)
        if !word.isEmpty, word.utf8.allSatisfy(safe.contains) { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// A tunnel's `host` as ssh gets it: a fwd host name or ssh alias as is; for `user@host:port` the port goes
/// into `-o Port=` (OpenSSH 9.2 rejects `ssh://user@[v6]:port`, so the URI form is not used).
package struct Destination: Sendable, Equatable {
    package var host: String
    package var port: Int?

    package init(host: String, port: Int? = nil) {
        self.host = host
        self.port = port
    }

    /// Parses `alias`, `host`, `user@host`, `user@host:port`, `[v6]`, `user@[v6]:port` or a bare IPv6 address.
    package init(_ value: String) {
        var user = ""
        var rest = Substring(value)
        if let at = value.lastIndex(of: "@") {
            user = String(value[...at])
            rest = value[value.index(after: at)...]
        }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            let inside = rest[rest.index(after: rest.startIndex)..<close]
            let after = rest[rest.index(after: close)...]
            self.init(host: user + inside, port: after.hasPrefix(":") ? Int(after.dropFirst()) : nil)
        } else if rest.filter({ $0 == ":" }).count == 1, let colon = rest.firstIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]) {
            self.init(host: user + rest[..<colon], port: port)
        } else {
            self.init(host: value)
        }
    }

    /// The arguments that end an ssh command line: the port option, then `--` and the host.
    package var arguments: [String] { (port.map { ["-o", "Port=\($0)"] } ?? []) + ["--", host] }
}
