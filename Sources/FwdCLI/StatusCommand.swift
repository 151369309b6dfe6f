import ArgumentParser
import Foundation
import FwdCore

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show each tunnel's state, forwards, uptime, restarts, probe latency and last error.",
        discussion: """
        States: starting, up, degraded (connected, but a target does not answer or a public forward is not shared), down, failed. \
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
            let clock = EventLine.formatter.string(from: Date()).dropFirst(11).prefix(8)
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
