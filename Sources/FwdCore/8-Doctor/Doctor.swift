import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One result of `fwd doctor`: what was checked, whether it is fine, and how to fix it when not.
package struct DoctorFinding: Sendable, Equatable, Encodable {
    package enum Status: String, Sendable, Encodable {
        case ok
        /// Worth knowing, but nothing is broken: does not make `fwd doctor` fail.
        case warning
        case problem
    }

    /// A stable name for the check: ssh, config, include, state-permissions, database, control-directory, stale-socket,
    /// control-path, names, port, supervisor, tunnel.
    package var check: String
    package var status: Status
    package var message: String
    @JSONNull package var fix: String?

    package init(_ check: String, _ status: Status, _ message: String, fix: String? = nil) {
        self.check = check
        self.status = status
        self.message = message
        self.fix = fix
    }
}

/// The checks of `fwd doctor`. It reads and probes, and changes nothing: in particular it opens the database
/// only when the state directory's permissions are right, because opening it tightens them.
package struct Doctor: Sendable {
    package var paths: FwdPaths
    /// The oldest OpenSSH with everything fwd uses: Include and ProxyJump (7.3), remote dynamic forwards (7.6).
    package static let minimumSSH = (major: 7, minor: 6)

    package init(paths: FwdPaths) { self.paths = paths }

    package func run() async -> [DoctorFinding] {
        var findings = await ssh()
        let config: FwdConfig?
        do {
            config = try ConfigLoader.load(path: paths.config)
            let count = config?.tunnels.count ?? 0
            let what = FileSystem.exists(paths.config) ? "\(paths.config) parses (\(count) tunnel\(count == 1 ? "" : "s"))" : "no config yet at \(paths.config)"
            findings.append(DoctorFinding("config", .ok, what))
        } catch {
            config = nil
            findings.append(DoctorFinding("config", .problem, "the config does not parse:\n\(error)",
                                          fix: "fix the lines named above (`fwd edit` checks the file before saving it)"))
        }
        findings.append(include())
        let permissions = statePermissions()
        findings += permissions
        findings += controlDirectory()
        findings.append(controlPathLength())
        findings += await staleSockets()
        var safeToOpen = !permissions.contains { $0.status == .problem } && FileSystem.exists(paths.database)
        if safeToOpen {
            let finding = database()
            findings.append(finding)
            safeToOpen = finding.status == .ok
        }
        // Read-only: doctor only looks (no lock file, no migration, no mode change).
        let store = safeToOpen ? Store.readOnly(path: paths.database) : nil
        let rows = store.flatMap { try? $0.tunnels() } ?? []
        let masters = Set((store.flatMap { try? $0.masters() } ?? []).map { Int32($0.pid) })
        let supervisor = Control.runningPID(paths)
        findings += supervisorHealth(pid: supervisor, rows: rows)
        if let config {
            let clashes = await nameClashes(config.hosts.keys.sorted() + config.tunnels.map(\.name))
            findings += clashes.isEmpty ? [DoctorFinding("names", .ok, "no tunnel or host name is also a Host in your ssh_config, a host in known_hosts, or a name that resolves")] : clashes
            findings += ports(config, rows: supervisor == nil ? [] : rows, masters: masters)
        }
        if supervisor != nil { findings += tunnels(rows) }
        return findings
    }

    // MARK: ssh

    func ssh() async -> [DoctorFinding] {
        let command = SSHCommand.version(ssh: paths.ssh)
        guard let result = try? await CommandRunner.run(command, timeout: .seconds(10)) else {
            return [DoctorFinding("ssh", .problem, "cannot run `\(command)`: no OpenSSH client found",
                                  fix: "install the OpenSSH client (Debian/Ubuntu: `apt install openssh-client`) or set FWD_SSH to its path")]
        }
        let text = (result.stderr + result.stdout).trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status == 0, let version = Self.openSSHVersion(text) else {
            return [DoctorFinding("ssh", .warning, "`\(command)` printed \"\(text)\", not an OpenSSH version",
                                  fix: "fwd is tested with OpenSSH; point FWD_SSH at an OpenSSH client if this one misbehaves")]
        }
        let first = text.split(separator: "\n").first.map(String.init) ?? text
        guard version >= Self.minimumSSH else {
            return [DoctorFinding("ssh", .problem, "\(first) is older than OpenSSH \(Self.minimumSSH.major).\(Self.minimumSSH.minor)",
                                  fix: "upgrade the OpenSSH client; fwd needs Include, ProxyJump and remote dynamic forwards")]
        }
        return [DoctorFinding("ssh", .ok, first)]
    }

    /// `OpenSSH_9.2p1 Debian-2, OpenSSL …` → (9, 2).
    static func openSSHVersion(_ text: String) -> (major: Int, minor: Int)? {
        guard let range = text.range(of: "OpenSSH_") else { return nil }
        let digits = text[range.upperBound...].prefix { $0.isNumber || $0 == "." }.split(separator: ".")
        guard digits.count >= 2, let major = Int(digits[0]), let minor = Int(digits[1]) else { return nil }
        return (major, minor)
    }

    // MARK: files

    /// The Include line must be in the user's ssh_config, before any Host or Match line (inside a block it
    /// would apply to that block only).
    func include() -> DoctorFinding {
        let line = SSHConfigFiles.includeLine(paths: paths)
        let file = paths.userSSHConfig
        let lines = (FileSystem.read(file) ?? "").split(separator: "\n", omittingEmptySubsequences: false)
        guard let index = lines.firstIndex(where: { $0 == line }) else {
            return DoctorFinding("include", .problem, "\(file) does not include fwd's ssh_config fragment, so plain ssh, scp and git do not know fwd's hosts and tunnels",
                                 fix: "`fwd config install` adds `\(line)` at the top (with a backup)")
        }
        let block = lines[..<index].firstIndex { l in
            let word = l.trimmingCharacters(in: .whitespaces).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "=" }).first?.lowercased()
            return word == "host" || word == "match"
        }
        if let block {
            return DoctorFinding("include", .problem, "fwd's Include in \(file) is on line \(index + 1), after a Host or Match line (line \(block + 1)), so it only applies inside that block",
                                 fix: "`fwd config uninstall && fwd config install` moves it to the top")
        }
        return DoctorFinding("include", .ok, "\(file) includes \(paths.fragment)")
    }

    /// The state directory and everything in it must be private: it holds the database, logs and ssh_config.
    func statePermissions() -> [DoctorFinding] {
        let dir = paths.stateDirectory
        guard let top = Self.status(dir) else {
            return [DoctorFinding("state-permissions", .ok, "\(dir) does not exist yet; fwd creates it with mode 0700")]
        }
        if top.st_uid != geteuid() {
            return [DoctorFinding("state-permissions", .problem, "\(dir) belongs to uid \(top.st_uid), not to you (uid \(geteuid()))",
                                  fix: "`sudo chown -R $(id -un) \(SSHCommand.shellQuote(dir))`, or point FWD_STATE_DIR elsewhere")]
        }
        var findings: [DoctorFinding] = []
        let mode = top.st_mode & 0o7777
        if mode & 0o077 != 0 {
            findings.append(DoctorFinding("state-permissions", .problem,
                                          "\(dir) has mode \(Self.octal(mode)); others can read or change fwd's database, logs and ssh_config",
                                          fix: "`chmod 700 \(SSHCommand.shellQuote(dir))`"))
        }
        var loose: [String] = []
        let entries = FileManager.default.enumerator(atPath: dir)
        while let entry = entries?.nextObject() as? String {
            let path = dir + "/" + entry
            guard let st = Self.status(path) else { continue }
            let type = st.st_mode & S_IFMT
            guard type == S_IFREG || type == S_IFDIR else { continue }
            if st.st_mode & 0o077 != 0 { loose.append("\(path) (\(Self.octal(st.st_mode & 0o7777)))") }
        }
        if !loose.isEmpty {
            findings.append(DoctorFinding("state-permissions", .problem,
                                          "files in \(dir) are readable by others: \(loose.prefix(5).joined(separator: ", "))\(loose.count > 5 ? " and \(loose.count - 5) more" : "")",
                                          fix: "`chmod -R go-rwx \(SSHCommand.shellQuote(dir))` (files 0600, directories 0700)"))
        }
        return findings.isEmpty ? [DoctorFinding("state-permissions", .ok, "\(dir) is 0700 and its files are private")] : findings
    }

    /// The state database must be an SQLite file of a schema this fwd knows; if not, every command that reads it
    /// stops with the same message and advice as this finding.
    func database() -> DoctorFinding {
        guard let error = Store.diagnose(path: paths.database) else {
            return DoctorFinding("database", .ok, "\(paths.database) reads")
        }
        return DoctorFinding("database", .problem, error.problem, fix: error.advice)
    }

    /// The socket directory must be a private directory of this user's in a place no one else can change, or
    /// another user could answer in place of a master (docs/architecture.md, "Where the sockets live").
    func controlDirectory() -> [DoctorFinding] {
        let dir = paths.controlDirectory
        guard FileSystem.exists(dir), let problem = FileSystem.socketDirectoryProblem(dir) else { return [] }
        return [DoctorFinding("control-directory", .problem, "\(problem)")]
    }

    /// The master binds `PATH.` plus 16 random characters; names longer than the directory leaves room for are
    /// hashed, so what must fit is a hashed one (docs/architecture.md, "ControlPath and stale sockets").
    func controlPathLength() -> DoctorFinding {
        let dir = paths.controlDirectory
        let longest = dir.utf8.count + 1 + paths.socketNameLimit
        let limit = FwdPaths.controlPathLimit
        guard longest <= limit else {
            return DoctorFinding("control-path", .problem, "ControlPaths in \(dir) need \(longest) bytes; a socket address holds \(limit)",
                                 fix: "set FWD_RUNTIME_DIR to a shorter directory only you can enter")
        }
        return DoctorFinding("control-path", .ok, "ControlPaths in \(dir) fit (at most \(longest) of \(limit) bytes)")
    }

    /// A socket no master answers is left by a master that was killed; ssh then refuses to bind there and
    /// silently runs without multiplexing (docs/architecture.md, "ControlPath and stale sockets").
    func staleSockets() async -> [DoctorFinding] {
        let dir = paths.controlDirectory
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        var findings: [DoctorFinding] = []
        var live = 0
        // A relay's socket (a login's questions) is not a master's.
        for name in names where "\(dir)/\(name)" != paths.supervisorSocket && !name.hasPrefix(AskpassRelay.socketPrefix) {
            let path = "\(dir)/\(name)"
            guard let st = Self.status(path), st.st_mode & S_IFMT == S_IFSOCK else { continue }
            let check = SSHCommand.mux(ssh: paths.ssh, socket: path, .check)
            if let result = try? await CommandRunner.run(check, timeout: .seconds(5)), result.status == 0 {
                live += 1
                continue
            }
            findings.append(DoctorFinding("stale-socket", .problem, "\(path) is a control socket no master answers (left by a master that was killed)",
                                          fix: "`rm \(SSHCommand.shellQuote(path))`; a new master could not bind there"))
        }
        let answering = live == 0 ? "" : "; \(live) master\(live == 1 ? " answers" : "s answer")"
        return findings.isEmpty ? [DoctorFinding("stale-socket", .ok, "no stale control sockets\(answering)")] : findings
    }

    // MARK: names

    /// Where a tunnel or host name is also a name ssh knows: a Host in the user's ssh_config, a name that
    /// resolves, or a host in known_hosts. A tunnel's Host block would redirect plain `ssh NAME` (and git, scp)
    /// to the tunnel's server; fwd leaves out the blocks the user's ssh_config defines
    /// (docs/configuration.md, "Names fwd shares with ssh") and warns about the others.
    package func nameClashes(_ names: [String]) async -> [DoctorFinding] {
        let files = SSHConfigAliases.walk(path: paths.userSSHConfig, home: FwdPaths.passwdHome(), skipping: [paths.fragment]).map(\.text)
        var findings: [DoctorFinding] = []
        for name in names {
            if SSHConfigAliases.defines(name, in: files) {
                findings.append(DoctorFinding("names", .warning, "\(name) is also a Host in \(paths.userSSHConfig); plain `ssh \(name)` keeps reaching your host, and fwd's block of that name is read by fwd's own ssh only",
                                              fix: "rename it in fwd.toml (`fwd edit`) if you also want `ssh \(name)` to use fwd's settings"))
                continue
            }
            if let file = await knownHostsFile(naming: name) {
                findings.append(DoctorFinding("names", .warning, "\(name) is a host in \(file); with fwd's Include, plain `ssh \(name)` (and git, scp) would reach fwd's server for \(name) instead",
                                              fix: "rename it in fwd.toml (`fwd edit`) to a name that is not a host, like \(name)-tunnel"))
                continue
            }
            if !Resolver.isNumeric(name), let addresses = try? await Resolver.resolveOffPool(host: name, port: nil), let first = addresses.first?.numericHost {
                findings.append(DoctorFinding("names", .warning, "\(name) resolves (to \(first)); with fwd's Include, plain `ssh \(name)` (and git, scp) would reach fwd's server for \(name) instead",
                                              fix: "rename it in fwd.toml (`fwd edit`) to a name that does not resolve, like \(name)-tunnel"))
            }
        }
        return findings
    }

    /// The known_hosts file that has an entry for `name` (port 22), found with `ssh-keygen -F`, which also
    /// reads hashed entries. The files are those `ssh -G NAME` names with the user's ssh_config, and ssh's
    /// defaults.
    func knownHostsFile(naming name: String) async -> String? {
        let home = FwdPaths.passwdHome()
        let config = FileSystem.exists(paths.userSSHConfig) ? paths.userSSHConfig : "none"
        let resolved = try? await SSHResolver.resolve(Destination(host: name), paths: paths, config: config)
        let values: [String] = (resolved?.values("userknownhostsfile") ?? []) + (resolved?.values("globalknownhostsfile") ?? [])
        let listed: [String] = values.flatMap { $0.split(separator: " ").map(String.init) }
        let defaults = ["~/.ssh/known_hosts", "~/.ssh/known_hosts2", "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]
        var seen = Set<String>()
        let files = (listed + defaults).map { $0.hasPrefix("~/") ? home + $0.dropFirst() : $0 }.filter { seen.insert($0).inserted }
        for file in files where FileSystem.exists(file) {
            let command = SSHCommand.findKnownHost(ssh: paths.ssh, name: name, file: file)
            if let result = try? await CommandRunner.run(command, timeout: .seconds(5)), result.status == 0, result.stdout.contains("found") {
                return file
            }
        }
        return nil
    }

    // MARK: processes

    /// `rows` are the tunnels in the store (none when it was not opened).
    func supervisorHealth(pid: Int32?, rows: [TunnelStatus]) -> [DoctorFinding] {
        if let pid { return [DoctorFinding("supervisor", .ok, "the supervisor (pid \(pid)) answers on \(paths.supervisorSocket)")] }
        let wanted = rows.filter { $0.desired == .up }.map(\.name)
        guard wanted.isEmpty else {
            return [DoctorFinding("supervisor", .problem, "no supervisor runs, but \(wanted.joined(separator: ", ")) \(wanted.count == 1 ? "is" : "are") wanted up",
                                  fix: "`fwd up \(wanted.joined(separator: " "))` starts one; `fwd service install` starts one at login")]
        }
        return [DoctorFinding("supervisor", .ok, "no supervisor runs; none is needed (no tunnel is wanted up)")]
    }

    /// Each local and dynamic forward's port must be free, or held by fwd's own master. `running` are the rows
    /// of a live supervisor; `masters` the master pids the store recorded.
    func ports(_ config: FwdConfig, rows running: [TunnelStatus], masters: Set<Int32>) -> [DoctorFinding] {
        var findings: [DoctorFinding] = []
        let live = Set(running.filter { [.up, .degraded, .starting].contains($0.state) }.map(\.name))
        for tunnel in config.tunnels {
            for forward in tunnel.forwards where forward.kind != .remote {
                guard let port = forward.listenPort, port > 0, Self.isTaken(host: forward.bindAddress, port: port) else { continue }
                let holder = ProcessTable.listener(onPort: port)
                if let holder, masters.contains(holder.pid) || isOurSSH(holder.pid) { continue }
                // Without /proc the holder is unknown: a tunnel the supervisor runs is taken to hold its own port.
                if holder == nil && live.contains(tunnel.name) { continue }
                let who = holder.map { "\($0.name) (pid \($0.pid))" } ?? "a process fwd cannot see"
                findings.append(DoctorFinding("port", .problem, "port \(port) of tunnel \(tunnel.name) (\(forward.kind.flag) \(forward.text)) is held by \(who)",
                                              fix: "stop \(holder.map { "\($0.name) (`kill \($0.pid)`)" } ?? "that program"), or change the port in [tunnels.\(tunnel.name)] (`fwd edit`)"))
            }
        }
        return findings.isEmpty ? [DoctorFinding("port", .ok, "every local and dynamic forward's port is free or fwd's own")] : findings
    }

    /// An ssh whose command line names fwd's socket directory is one of fwd's masters.
    func isOurSSH(_ pid: Int32) -> Bool {
        let argv = ProcessTable.commandLine(of: pid)
        return (argv.first?.hasSuffix("ssh") ?? false) && argv.contains { $0.hasPrefix(paths.controlDirectory + "/") }
    }

    /// Whether binding `host:port` fails because the address is in use. SO_REUSEADDR, or a port just released
    /// (TIME_WAIT) would count as taken (docs/architecture.md, "Bind addresses").
    static func isTaken(host: String?, port: Int) -> Bool {
        var address = host ?? "127.0.0.1"
        if address == "localhost" { address = "127.0.0.1" }
        if address == "*" || address.isEmpty { address = "0.0.0.0" }
        if address.hasPrefix("[") && address.hasSuffix("]") { address = String(address.dropFirst().dropLast()) }
        do {
            _ = try TCPListener.listen(host: address, port: port, backlog: 1)
            return false
        } catch {
            return error.code == EADDRINUSE
        }
    }

    /// Tunnels the supervisor keeps failing to bring up, with where to look on the server's side.
    func tunnels(_ rows: [TunnelStatus]) -> [DoctorFinding] {
        rows.filter { $0.desired == .up }.compactMap { row in
            switch row.state {
            case .degraded:
                let remote = row.forwards.contains { $0.kind == .remote }
                return DoctorFinding("tunnel", .problem, "\(row.name) is connected but its probe fails\(row.lastError.map { ": \($0)" } ?? "")",
                                     fix: remote
                                        ? "check that the local service behind the -R forward runs; on the server, sshd_config must allow it (AllowTcpForwarding, PermitListen, GatewayPorts for non-loopback binds)"
                                        : "check that the target service runs and that the server can reach it (`fwd show \(row.name)` prints the target); sshd_config must allow it (AllowTcpForwarding, PermitOpen)")
            case .failed:
                return DoctorFinding("tunnel", .problem, "\(row.name) failed\(row.lastError.map { ": \($0)" } ?? "")",
                                     fix: "`fwd logs \(row.name)` shows ssh's own messages; fix the cause, then `fwd up \(row.name)`")
            case .needsAuth:
                return DoctorFinding("tunnel", .problem, "\(row.name) waits for a login: its connection dropped and logging in again needs a person\(row.lastError.map { " (\($0))" } ?? ""); fwd does not log in again by itself",
                                     fix: "`fwd up \(row.name)` on a terminal asks again; a key in ssh-agent (`ssh-add`), or one without a passphrase, lets fwd reconnect by itself")
            default:
                return nil
            }
        }
    }

    static func status(_ path: String) -> stat? {
        var st = stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    static func octal(_ mode: mode_t) -> String { "0" + String(mode, radix: 8) }
}
