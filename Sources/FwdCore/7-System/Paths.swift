import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where fwd reads and writes, resolved once from the environment and passed down as a value.
package struct FwdPaths: Sendable, Equatable {
    /// fwd.toml.
    package var config: String
    /// State: database, logs, fwd's ssh_config files. Mode 0700.
    package var stateDirectory: String
    /// The ssh_config that plain `ssh` reads for this user, where `fwd config install` adds its Include.
    /// ssh finds `~/.ssh/config` through the passwd entry, not $HOME (docs/architecture.md, "Home directory"),
    /// so that is the default.
    package var userSSHConfig: String
    /// Directory of every socket fwd listens on or names: the ControlMasters', the supervisor's, the askpass
    /// relays'. Private to this user, see `controlDirectory(forState:environment:)`.
    package var controlDirectory: String
    /// The ssh client fwd runs.
    package var ssh: String

    /// The fragment of Host blocks rendered from fwd.toml; included from the user's ssh_config.
    package var fragment: String { stateDirectory + "/ssh_config.fwd" }
    /// The file fwd passes to its own ssh with `-F`: it includes the fragment, the user's ssh_config and the
    /// system one, in the order plain ssh would read them, so the user's settings apply to everything fwd runs.
    package var rootSSHConfig: String { stateDirectory + "/ssh_config" }
    package var database: String { stateDirectory + "/fwd.db" }
    package var logDirectory: String { stateDirectory + "/logs" }
    /// The log of `host`'s master: ssh's stderr, capped with one older generation (`LogFile`).
    package func sshLog(host: String) -> String { "\(logDirectory)/\(host.replacingOccurrences(of: "/", with: "_")).log" }

    package init(config: String, stateDirectory: String, userSSHConfig: String, controlDirectory: String? = nil, ssh: String = "ssh",
                 environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.config = config
        self.stateDirectory = stateDirectory
        self.userSSHConfig = userSSHConfig
        self.controlDirectory = controlDirectory ?? FwdPaths.controlDirectory(forState: stateDirectory, environment: environment)
        self.ssh = ssh
    }

    /// `$FWD_CONFIG`, else `$XDG_CONFIG_HOME/fwd/fwd.toml`, else `~/.config/fwd/fwd.toml`; state in `$FWD_STATE_DIR`,
    /// else `$XDG_STATE_HOME/fwd`, else `~/.local/state/fwd`; `$FWD_SSH_CONFIG` overrides the user's ssh_config;
    /// sockets as `controlDirectory(forState:environment:)` says.
    package static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> FwdPaths {
        let home = nonEmpty(env["HOME"]) ?? passwdHome()
        let config = nonEmpty(env["FWD_CONFIG"])
            ?? (nonEmpty(env["XDG_CONFIG_HOME"]).map { $0 + "/fwd/fwd.toml" } ?? home + "/.config/fwd/fwd.toml")
        let state = nonEmpty(env["FWD_STATE_DIR"])
            ?? (nonEmpty(env["XDG_STATE_HOME"]).map { $0 + "/fwd" } ?? home + "/.local/state/fwd")
        let userSSH = nonEmpty(env["FWD_SSH_CONFIG"]) ?? passwdHome() + "/.ssh/config"
        return FwdPaths(config: absolute(config), stateDirectory: absolute(state), userSSHConfig: absolute(userSSH),
                        ssh: nonEmpty(env["FWD_SSH"]) ?? which("ssh", path: env["PATH"]) ?? "ssh", environment: env)
    }

    /// The absolute path of `name` on PATH, looked up once: given a bare name, every spawn would try each PATH
    /// directory in turn (one failed exec per directory before ssh's), on every `-O forward` and probe.
    static func which(_ name: String, path: String?) -> String? {
        for dir in (path ?? "/usr/bin:/bin").split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Where the sockets go: a directory no other user can create, enter or replace first, because plain
    /// `ssh HOST` hands its terminal to whatever answers at the ControlPath (docs/architecture.md, "Where the
    /// sockets live"). `$FWD_RUNTIME_DIR` if set; else `fwd-HASH` in `$XDG_RUNTIME_DIR` when that is a
    /// directory of this user's that nobody else can enter (after `su` or `sudo` it may be another user's);
    /// else `run` in the state directory. The hash of the state directory keeps separate fwd instances apart.
    package static func controlDirectory(forState state: String, environment env: [String: String]) -> String {
        if let dir = nonEmpty(env["FWD_RUNTIME_DIR"]) { return absolute(dir) }
        if let runtime = nonEmpty(env["XDG_RUNTIME_DIR"]), runtime.hasPrefix("/"), FileSystem.isPrivateDirectory(runtime) {
            return "\(runtime)/fwd-\(String(fnv1a32(state), radix: 16))"
        }
        return state + "/run"
    }

    /// The longest ControlPath: the master first binds `PATH.` plus 16 random characters, and that must fit in
    /// a socket address (90 bytes on Linux, 86 on macOS; docs/architecture.md, "ControlPath and stale sockets").
    package static var controlPathLimit: Int { UnixSocket.pathLimit - 17 }

    /// A hashed socket name: `@` and 16 hex digits.
    package static let hashedNameLength = 17

    /// The supervisor's control socket, beside the masters' sockets: in the short control directory, because a
    /// UNIX socket path must fit in about 104 bytes and a state directory can be long.
    package var supervisorSocket: String { controlDirectory + "/fwd.sock" }

    /// The longest socket name `controlSocket` returns: 40 bytes, less where the directory is long.
    package var socketNameLimit: Int {
        max(Self.hashedNameLength, min(40, Self.controlPathLimit - controlDirectory.utf8.count - 1))
    }

    /// The ControlMaster socket for `host` as written in fwd.toml (a `[hosts]` name, an ssh alias or
    /// user@host[:port]): the name itself when it is short and plain, else `@` and a hash of it. fwd names the
    /// socket itself rather than use `%C`, so the master starts without first asking `ssh -G` where its socket
    /// goes, and two aliases of one server (same `%C`) get a master each, each with its own settings. The Host
    /// blocks fwd generates carry the same path, so `ssh HOST` and `ssh TUNNEL` ride that master.
    package func controlSocket(for host: String) -> String {
        let plain = host.utf8.count <= socketNameLimit && !host.hasPrefix(".") && !host.hasPrefix(AskpassRelay.socketPrefix)
            && host.utf8.allSatisfy { $0 < 0x80 && (isalnum(Int32($0)) != 0 || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")) }
        if plain && "\(controlDirectory)/\(host)" != supervisorSocket { return "\(controlDirectory)/\(host)" }
        let hash = String(Self.fnv1a64(host), radix: 16)
        return "\(controlDirectory)/@\(String(repeating: "0", count: 16 - hash.count))\(hash)"
    }

    static func fnv1a32(_ text: String) -> UInt32 {
        var hash: UInt32 = 2166136261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16777619 }
        return hash
    }

    static func fnv1a64(_ text: String) -> UInt64 {
        var hash: UInt64 = 14695981039346656037
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 1099511628211 }
        return hash
    }

    package static func passwdHome() -> String {
        if let pw = getpwuid(geteuid()), let dir = pw.pointee.pw_dir { return String(cString: dir) }
        return NSHomeDirectory()
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}
