import ArgumentParser
import Foundation
import FwdCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each tunnel's state, forwards, uptime, restarts, probe latency and last error.",
        discussion: """
        States: starting, up, degraded (connected, target not answering), down, failed. \
        Examples: fwd status --json; fwd status --watch (redraws every second until Ctrl-C, on a terminal)
        """
    )

    @Argument(help: "Only this tunnel.", completion: Completions.tunnels)
    var name: String?

    @Flag(help: "Print a JSON array.")
    var json = false

    @Flag(name: .shortAndLong, help: "Redraw the table every second until Ctrl-C (on a terminal only).")
    var watch = false

    func validate() throws {
        if watch && json { throw ValidationError("--watch redraws a table for people; it does not go with --json") }
    }

    func run() async throws {
        let context = Context.current()
        let store = try Store(path: context.paths.database)
        if json {
            print(try JSONOutput.encode(try rows(store, paths: context.paths).rows.map(StatusJSON.init)))
            return
        }
        let terminal = Terminal()
        guard watch else {
            print(try render(store, paths: context.paths, terminal: terminal), terminator: "")
            return
        }
        guard terminal.isTTY else {
            throw CommandFailure("--watch redraws the terminal, and standard output is not one; use `fwd status` or `fwd status --json` in scripts")
        }
        // Ctrl-C ends the process (default SIGINT); each frame is drawn whole, so nothing is left half-written
        // beyond the current line.
        while !Task.isCancelled {
            let frame: String
            do {
                frame = try render(store, paths: context.paths, terminal: terminal)
            } catch {
                frame = "\(error)\n"
            }
            let clock = LogsCommand.formatter.string(from: Date()).dropFirst(11).prefix(8)
            print(Terminal.clearScreen + frame + terminal.paint("\n\(clock) · every 1 s · Ctrl-C to stop", .dim), terminator: "")
            fflush(nil)
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// The rows to show; with no supervisor nothing runs, and the rows say so.
    func rows(_ store: Store, paths: FwdPaths) throws -> (rows: [TunnelStatus], supervisor: Int32?) {
        var rows = try store.tunnels()
        if let name {
            rows = rows.filter { $0.name == name }
            if rows.isEmpty { throw ConfigError.unknownName(name, suggestion: ConfigError.closest(to: name, in: try store.tunnels().map(\.name))) }
        }
        // Rows say what the supervisor last saw; with no supervisor nothing runs, and the output says so.
        let supervisor = Control.runningPID(paths)
        if supervisor == nil {
            rows = rows.map { row in
                guard row.state != .down && row.state != .failed else { return row }
                var r = row
                r.state = .down
                r.pid = nil
                r.lastError = "no supervisor is running (`fwd up \(row.name)` starts one)"
                return r
            }
        }
        return (rows, supervisor)
    }

    func render(_ store: Store, paths: FwdPaths, terminal: Terminal) throws -> String {
        let (rows, supervisor) = try rows(store, paths: paths)
        if rows.isEmpty {
            return "No tunnels have been brought up. `fwd list` shows the configured ones; `fwd up NAME` starts one.\n"
        }
        let now = Date()
        var table = [["NAME", "STATE", "FORWARDS", "UPTIME", "RESTARTS", "PROBE", "LAST ERROR"]]
        for r in rows {
            let forwards = Self.shown(r.forwards)
            table.append([
                r.name, terminal.label(r.state), forwards.joined(separator: ", "),
                r.state == .up || r.state == .degraded ? Self.duration(now.timeIntervalSince(r.since)) : "-",
                String(r.restarts), r.probeMs.map { String(format: "%.1f ms", $0) } ?? "-", r.lastError ?? "",
            ])
        }
        var text = Table.render(table) { row, column, cell in
            row > 0 && column == 1 ? terminal.paint(cell, Terminal.colour(rows[row - 1].state)) : cell
        }
        if supervisor == nil { text += "(no supervisor is running)\n" }
        return text
    }


    /// The forwards as a person reads them: a port range once, as written, with its port count; a SOCKS
    /// proxy with the URL to paste into a client.
    static func shown(_ forwards: [ForwardStatus]) -> [String] {
        var out: [String] = []
        var index = 0
        while index < forwards.count {
            let f = forwards[index]
            if let range = f.range {
                var end = index + 1
                while end < forwards.count, forwards[end].range == range, forwards[end].kind == f.kind { end += 1 }
                out.append("\(f.kind.flag) \(range) (\(end - index) ports)")
                index = end
                continue
            }
            var text = "\(f.kind.flag) \(f.spec)"
            if let port = f.allocatedPort { text += " (port \(port))" }
            if let url = socksURL(f) { text += " (\(url))" }
            out.append(text)
            index += 1
        }
        return out
    }

    static func socksURL(_ f: ForwardStatus) -> String? {
        guard f.kind == .dynamic else { return nil }
        return (try? ForwardSpec.parse(f.spec, kind: .dynamic))?.socksURL
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        return "\(s / 3600)h\(s % 3600 / 60)m"
    }
}

struct StatusJSON: Encodable {
    var name: String
    var state: String
    var desired: String
    var host: String
    var forwards: [ForwardJSON]
    @JSONNull var pid: Int?
    var since: String
    var restarts: Int
    @JSONNull var probe_ms: Double?
    @JSONNull var last_error: String?

    struct ForwardJSON: Encodable {
        var kind: String
        var spec: String
        @JSONNull var allocated_port: Int?
        var probe: String
        @JSONNull var probe_ms: Double?
        @JSONNull var ok: Bool?
        /// The port range this forward belongs to, as written.
        @JSONNull var range: String?
        /// For a -D forward, `socks5h://HOST:PORT`.
        @JSONNull var socks_url: String?
    }

    /// Made once: building a formatter per row was a third of `status --json`'s time at 100 tunnels
    /// (scripts/bench measure 7b).
    static let timestamp = Date.ISO8601FormatStyle()

    init(_ r: TunnelStatus) {
        name = r.name
        state = r.state.rawValue
        desired = r.desired.rawValue
        host = r.host
        forwards = r.forwards.map { ForwardJSON(kind: $0.kind.rawValue, spec: $0.spec, allocated_port: $0.allocatedPort, probe: $0.probe.rawValue, probe_ms: $0.probeMs, ok: $0.ok,
                                                 range: $0.range, socks_url: StatusCommand.socksURL($0)) }
        pid = r.pid
        since = r.since.formatted(Self.timestamp)
        restarts = r.restarts
        probe_ms = r.probeMs
        last_error = r.lastError
    }
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Show the event log (state changes, restarts with reasons) and ssh's own messages.",
        discussion: "Example: fwd logs intranet-wiki -f"
    )

    @Argument(help: "Only events of this tunnel (and its host's ssh log).", completion: Completions.tunnels)
    var name: String?

    @Flag(name: .shortAndLong, help: "Keep printing new events until interrupted.")
    var follow = false

    @Option(help: "How many of the latest events to show first.")
    var lines: Int = 50

    @Flag(help: "Print the events as a JSON array (without ssh's messages).")
    var json = false

    func validate() throws {
        if json && follow { throw ValidationError("--json prints one array and ends; it does not go with --follow") }
    }

    func run() async throws {
        let context = Context.current()
        let store = try Store(path: context.paths.database)
        var events = try store.events(tunnel: name, after: 0, limit: 1_000_000)
        events = Array(events.suffix(lines))
        if json {
            Swift.print(try JSONOutput.encode(events.map(EventJSON.init)))
            return
        }
        events.forEach(Self.print)
        if let name, let host = try store.tunnel(name)?.host {
            let log = "\(context.paths.logDirectory)/\(host).log"
            if let text = FileSystem.read(log), !text.isEmpty {
                Swift.print("--- ssh messages for \(host) (\(log)), latest last:")
                text.split(separator: "\n").suffix(20).forEach { Swift.print($0) }
            }
        }
        guard follow else { return }
        var last = try events.last?.id ?? (store.events(tunnel: name, after: 0, limit: 1_000_000).last?.id ?? 0)
        while !Task.isCancelled {
            // Pushed by the supervisor as they are recorded. With none running, nothing records events but
            // other fwd commands, and the log is read once a second until one starts.
            if let client = try? ControlClient(paths: context.paths) {
                try client.send(ControlRequest(op: .follow, names: name.map { [$0] }, after: last))
                _ = try client.reply(timeout: 10)
                while let reply = try? client.next(timeout: nil) {
                    guard case .event(let e) = reply else { continue }
                    Self.print(e)
                    last = e.id
                }
            }
            for e in try store.events(tunnel: name, after: last, limit: 1000) {
                Self.print(e)
                last = e.id
            }
            try await Task.sleep(for: .seconds(1))
        }
    }

    static let formatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        return f
    }()

    static func print(_ e: Event) {
        let subject = e.tunnel ?? e.host ?? "fwd"
        let change = e.kind == .state ? " \(e.from ?? "?") → \(e.to ?? "?")" : ""
        Swift.print("\(formatter.string(from: e.time))  \(subject)  \(e.kind)\(change): \(e.message)")
        fflush(nil)
    }
}

struct EventJSON: Encodable {
    var id: Int64
    var time: String
    @JSONNull var tunnel: String?
    @JSONNull var host: String?
    var kind: String
    @JSONNull var from: String?
    @JSONNull var to: String?
    var message: String

    static let timestamp = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    init(_ e: Event) {
        id = e.id
        time = e.time.formatted(Self.timestamp)
        tunnel = e.tunnel
        host = e.host
        kind = e.kind.rawValue
        from = e.from
        to = e.to
        message = e.message
    }
}

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Probe tunnels now and print the result; exits non-zero when one is not up.",
        discussion: "Example: fwd check intranet-wiki"
    )

    @Argument(help: "Tunnel or group names (default: every tunnel that is wanted up).", completion: Completions.tunnelsAndGroups)
    var names: [String] = []

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let context = Context.current()
        // Names are checked against the config before the state directory is touched: a typo changes nothing.
        let named = names.isEmpty ? nil : try context.loadConfig().resolve(names).map(\.name)
        let store = try Store(path: context.paths.database)
        let selected = try named ?? store.desiredUp().map(\.name)
        try Control.request(ControlRequest(op: .check, names: selected), paths: context.paths)
        let rows = try selected.compactMap { try store.tunnel($0) }
        if json {
            print(try JSONOutput.encode(rows.map(StatusJSON.init)))
        } else {
            let terminal = Terminal()
            for r in rows {
                let probes = r.forwards.map { f in
                    let result = f.ok == true ? terminal.paint("ok", .green) : terminal.paint("FAIL", .red)
                    return "\(f.probe) \(result) \(f.probeMs.map { String(format: "%.1f ms", $0) } ?? "")"
                }
                print("\(r.name): \(terminal.state(r.state))  [\(probes.joined(separator: "; "))]\(r.lastError.map { "  \($0)" } ?? "")")
            }
        }
        if rows.count < selected.count || rows.contains(where: { $0.state != .up }) { throw ExitCode(1) }
    }
}

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the supervisor in the foreground (for systemd or launchd).",
        discussion: """
        Brings up the tunnels that `fwd up` asked for, keeps them up, and takes every master down on SIGTERM. \
        `fwd up` starts one in the background when none runs; only one runs per state directory.
        """
    )

    @Flag(help: "Ask the running supervisor to stop, and wait until it has.")
    var stop = false

    @Flag(help: .hidden)
    var onDemand = false

    @Option(help: .hidden)
    var readyFd: Int32?

    func run() async throws {
        let paths = Context.current().paths
        if stop {
            // The supervisor answers once its masters are down and its lock is released.
            try Control.request(ControlRequest(op: .stop), paths: paths, timeout: 60)
            return
        }
        try await SupervisorService(paths: paths, mode: .daemon, options: .withAskpass(), onDemand: onDemand, readyFD: readyFd).run()
    }
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Supervise the named tunnels in the foreground, without a daemon; Ctrl-C takes them down.",
        discussion: "Example: fwd run intranet-wiki socks"
    )

    @Argument(help: "Tunnel or group names.", completion: Completions.tunnelsAndGroups)
    var names: [String]

    func run() async throws {
        let context = Context.current()
        let tunnels = try context.loadConfig().resolve(names)
        let names = Set(tunnels.map(\.name))
        let service = SupervisorService(paths: context.paths, mode: .foreground(names: tunnels.map(\.name)), options: .withAskpass(),
                                        prompter: Waiter.canPrompt ? TerminalPrompter() : nil)
        // The supervisor runs in this process: its events come straight from its store writer.
        try await service.run(onEvent: { e in
            if e.tunnel.map(names.contains) ?? true { LogsCommand.print(e) }
        })
    }
}

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh",
        abstract: "Run ssh to a host with fwd's config, riding its master (agent/X11 forwarding as the host asks).",
        discussion: "Example: fwd ssh office -- uptime"
    )

    @Argument(help: "A [hosts] name, an ssh alias or user@host[:port].", completion: Completions.hosts)
    var host: String

    @Argument(parsing: .postTerminator, help: "Arguments for ssh after `--` (a remote command, or ssh options).")
    var arguments: [String] = []

    func validate() throws {
        if let p = Validation.hostProblem(host) { throw ValidationError(p) }
    }

    func run() async throws {
        let context = Context.current()
        let config = try context.loadConfig()
        try await SSHConfigFiles.write(config, paths: context.paths)
        let destination = Destination(host)
        let socket = context.paths.controlSocket(for: host)
        let command = SSHCommand.session(ssh: context.paths.ssh, config: context.paths.rootSSHConfig,
                                         socket: FileSystem.exists(socket) ? socket : nil,
                                         destination: destination, extra: arguments)
        let argv = command.argv.map { strdup($0) } + [nil]
        execvp(command.executable, argv)
        throw CommandFailure("cannot run \(command.executable): \(String(cString: strerror(errno)))")
    }
}
