import ArgumentParser
import Foundation
import FwdCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each tunnel's state, forwards, uptime, restarts, probe latency and last error.",
        discussion: """
        States: starting, up, degraded (connected, but a target does not answer or a public forward is not shared), \
        needs-auth (a login waits for you: `fwd up NAME` on a terminal asks), down, failed. On a terminal the table \
        fits its width and errors go on a line of their own; piped, every line is complete. \
        Examples: fwd status --json; fwd status --watch (redraws every second until Ctrl-C, on a terminal)
        """
    )

    @Argument(help: "Only these tunnels or groups (default: every tunnel in the config, and any still running).",
              completion: Completions.tunnelsAndGroups)
    var names: [String] = []

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
            let shown = try rows(store, paths: context.paths)
            print(try JSONOutput.encode(shown.rows.map { StatusJSON($0, config: shown.config[$0.name]) }))
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
        var first = true
        while !Task.isCancelled {
            let frame: String
            do {
                frame = try render(store, paths: context.paths, terminal: terminal)
            } catch {
                frame = "\(error)\n"
            }
            let clock = EventLine.formatter.string(from: Date()).dropFirst(11).prefix(8)
            // Drawn over the last frame (home, each line cleared to its end, then the rest of the screen), so
            // nothing blanks between frames.
            let body = (frame + terminal.paint("\n\(clock) · every 1 s · Ctrl-C to stop", .dim))
                .split(separator: "\n", omittingEmptySubsequences: false).joined(separator: Terminal.clearLine + "\n")
            print((first ? Terminal.clearScreen : Terminal.home) + body + Terminal.clearLine + Terminal.clearBelow, terminator: "")
            first = false
            fflush(nil)
            try await Task.sleep(for: .seconds(1))
        }
    }

    /// How a row stands against fwd.toml.
    enum ConfigMatch: String {
        /// Runs as the file says (or is down, and shown as the file says).
        case same
        /// Runs with a definition the file no longer has: the file changed and has not been applied (a
        /// supervisor applies a save within a second; a file that does not parse is not applied).
        case changed
        /// Still runs, but the file no longer has it.
        case removed
    }

    struct Shown {
        var rows: [TunnelStatus]
        var config: [String: ConfigMatch]
        var supervisor: Int32?
    }

    /// The file is the truth for what exists: every tunnel in it is shown (from the store, or `down` when never
    /// brought up, with the file's forwards while it is down), and so is any tunnel the store still has
    /// running that the file no longer lists. A file that does not parse leaves the store's rows, with a
    /// warning. With no supervisor nothing runs, and the rows say so.
    func rows(_ store: Store, paths: FwdPaths) throws -> Shown {
        let recorded = try store.tunnels()
        var config: FwdConfig?
        do {
            config = try ConfigLoader.load(path: paths.config)
        } catch {
            FileHandle.standardError.write(Data("warning: \(error)\n  (showing what the supervisor last recorded)\n".utf8))
        }
        var rows: [TunnelStatus] = []
        var match: [String: ConfigMatch] = [:]
        if let config {
            let byName = Dictionary(recorded.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for tunnel in config.tunnels {
                let written = ForwardStatus.initial(for: tunnel)
                guard var row = byName[tunnel.name] else {
                    rows.append(TunnelStatus(name: tunnel.name, host: tunnel.host, desired: .down, state: .down, since: Date(),
                                             forwards: written, updatedAt: Date()))
                    match[tunnel.name] = .same
                    continue
                }
                let same = row.host == tunnel.host && row.forwards.map { "\($0.kind)\($0.spec)" } == written.map { "\($0.kind)\($0.spec)" }
                if !same && row.state == .down && row.desired == .down {
                    (row.host, row.forwards) = (tunnel.host, written)
                }
                match[tunnel.name] = same || row.state == .down ? .same : .changed
                rows.append(row)
            }
            for row in recorded where config.tunnel(named: row.name) == nil && row.state != .down {
                rows.append(row)
                match[row.name] = .removed
            }
        } else {
            rows = recorded
        }
        if !names.isEmpty {
            var selected: Set<String> = []
            for name in names {
                if let members = try? config?.resolve([name]) {
                    selected.formUnion(members.map(\.name))
                } else if rows.contains(where: { $0.name == name }) {
                    selected.insert(name)
                } else {
                    let known = rows.map(\.name) + (config?.groups.map(\.name) ?? [])
                    throw ConfigError.unknownName(name, suggestion: ConfigError.closest(to: name, in: known))
                }
            }
            rows = rows.filter { selected.contains($0.name) }
        }
        // A latency is shown only for a tunnel that is connected, and only from forwards that have a probe.
        rows = rows.map { row in
            var r = row
            let live = r.state == .up || r.state == .degraded
            if !live { for i in r.forwards.indices { r.forwards[i].probeMs = nil } }
            r.probeMs = live ? r.forwards.filter { $0.probe != .none }.compactMap(\.probeMs).max() : nil
            return r
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
        return Shown(rows: rows, config: match, supervisor: supervisor)
    }

    /// What the LAST ERROR column says of a row that does not run as the file says.
    static func note(_ match: ConfigMatch?, name: String) -> String? {
        switch match {
        case .changed: "edited in the config, not applied yet (`fwd reload`)"
        case .removed: "removed from the config (`fwd down \(name)` stops it)"
        case .same, nil: nil
        }
    }

    func render(_ store: Store, paths: FwdPaths, terminal: Terminal) throws -> String {
        let shown = try rows(store, paths: paths)
        let (rows, supervisor) = (shown.rows, shown.supervisor)
        if rows.isEmpty {
            return "No tunnels are configured in \(paths.config). `fwd add NAME --host HOST -L PORT:TARGET:PORT` adds one.\n"
        }
        let now = Date()
        let errors = rows.map { r in
            [Self.note(shown.config[r.name], name: r.name), r.lastError,
             r.state == .starting ? RetryWording.nextTry(r.nextRetry, now: now) : nil].compactMap { $0 }.joined(separator: "; ")
        }
        func cells(_ r: TunnelStatus, compact: Bool) -> [String] {
            [r.name, terminal.label(r.state), Self.shown(r.forwards, compact: compact).joined(separator: ", "),
             r.state == .up || r.state == .degraded ? Self.duration(now.timeIntervalSince(r.since)) : "-",
             String(r.restarts), r.probeMs.map { String(format: "%.1f ms", $0) } ?? "-"]
        }
        let header = ["NAME", "STATE", "FORWARDS", "UPTIME", "RESTARTS", "PROBE"]
        var text: String
        if let width = terminal.columns {
            // On a terminal, every line fits: the default bind address goes, forwards are cut to what is left,
            // and the error moves to an indented line of its own (cut too, unless tunnels were named).
            var table = [header] + rows.map { cells($0, compact: true) }
            let others = (0..<header.count).filter { $0 != 2 }.map { i in table.map { $0[i].count }.max() ?? 0 }.reduce(0, +)
            let room = max(12, width - others - 2 * (header.count - 1))
            for i in table.indices.dropFirst() { table[i][2] = Terminal.cut(table[i][2], to: room) }
            let lines = Table.render(table) { row, column, cell in
                row > 0 && column == 1 ? terminal.paint(cell, Terminal.colour(rows[row - 1].state)) : cell
            }.split(separator: "\n", omittingEmptySubsequences: false)
            text = ""
            for (i, line) in lines.enumerated() where !line.isEmpty {
                text += line + "\n"
                if i > 0, !errors[i - 1].isEmpty {
                    let error = "  ↳ " + errors[i - 1]
                    text += terminal.paint(names.isEmpty ? Terminal.cut(error, to: width) : error, .dim) + "\n"
                }
            }
        } else {
            let table = [header + ["LAST ERROR"]] + rows.indices.map { cells(rows[$0], compact: false) + [errors[$0]] }
            text = Table.render(table) { row, column, cell in
                row > 0 && column == 1 ? terminal.paint(cell, Terminal.colour(rows[row - 1].state)) : cell
            }
        }
        if supervisor == nil { text += "(no supervisor is running)\n" }
        return text
    }


    /// The forwards as a person reads them: a port range once, as written, with its port count; a SOCKS
    /// proxy with the URL to paste into a client.
    static func shown(_ forwards: [ForwardStatus], compact: Bool = false) -> [String] {
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
            var text = "\(f.kind.flag) \(compact ? Self.withoutDefaultBind(f.spec) : f.spec)"
            if let port = f.allocatedPort { text += " (port \(port))" }
            if let url = socksURL(f) { text += " (\(url))" }
            if let shared = sharing(f) { text += " (\(shared))" }
            out.append(text)
            index += 1
        }
        return out
    }

    /// Where a public forward's last probe reached it beyond loopback, as a person reads it; nil for a forward
    /// that is not shared (or not probed yet).
    static func sharing(_ f: ForwardStatus) -> String? {
        guard let shared = f.shared else { return nil }
        if shared.isEmpty { return f.kind == .remote ? "not shared: kept on the server's loopback" : "not shared" }
        return (f.kind == .remote ? "shared on the server at " : "shared on ") + shared.joined(separator: ", ")
    }

    /// A spec without the loopback bind address ssh uses when none is written (`127.0.0.1:8080:wiki:80` reads
    /// `8080:wiki:80`), for a terminal that is short of room.
    static func withoutDefaultBind(_ spec: String) -> String {
        for prefix in ["127.0.0.1:", "localhost:"] where spec.hasPrefix(prefix) { return String(spec.dropFirst(prefix.count)) }
        return spec
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
