import ArgumentParser
import Foundation
import FwdCore

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

    @Option(help: "How many lines to show first, at most: the latest events, and with NAME the ssh lines about its forwards.")
    var lines: Int = 50

    @Option(help: ArgumentHelp("Only events since then: a duration ago (30s, 10m, 2h, 1d) or a time (2026-12-08T10:00, UTC unless it says).",
                               valueName: "when"))
    var since: String?

    @Flag(help: "Print the events as a JSON array (without ssh's messages).")
    var json = false

    func validate() throws {
        if json && follow { throw ValidationError("--json prints one array and ends; it does not go with --follow") }
        if lines < 1 { throw ValidationError("--lines takes a number of lines, 1 or more") }
        if let since, Self.moment(since) == nil {
            throw ValidationError("--since \"\(since)\" is neither a duration (30s, 10m, 2h, 1d) nor a time (2026-12-08T10:00)")
        }
    }

    /// `--since`'s moment: now less a duration, or a time as ISO 8601 (date and time; UTC without an offset).
    static func moment(_ text: String, now: Date = Date()) -> Date? {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last.flatMap({ units[$0] }), let n = Double(text.dropLast()), n >= 0 {
            return now.addingTimeInterval(-n * unit)
        }
        for format in ["yyyy-MM-dd'T'HH:mm:ssXXXXX", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd"] {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = format
            if let date = f.date(from: text) { return date }
        }
        return nil
    }

    /// The lines of a host's ssh log that are about `own` forwards (their listen ports and socket paths), or
    /// about the connection itself; lines that name only other tunnels' forwards are left out. A channel the
    /// server could not open ("open failed", which fwd's own probes cause while a target is down) is counted,
    /// not repeated: one summary line stands for all of them.
    static func sshLines(_ text: String, own: [String], others: [String]) -> [String] {
        func mentions(_ line: Substring, _ marks: [String]) -> Bool {
            marks.contains { mark in
                line.ranges(of: mark).contains { r in
                    let before = r.lowerBound == line.startIndex ? nil : line[line.index(before: r.lowerBound)]
                    let after = r.upperBound == line.endIndex ? nil : line[r.upperBound]
                    return !(before?.isNumber ?? false) && !(after?.isNumber ?? false)
                }
            }
        }
        var kept: [String] = []
        var refused = 0
        var latest = ""
        // ssh ends its lines with CRLF, which Swift reads as one Character.
        for line in text.split(whereSeparator: \.isNewline) {
            if line.contains("open failed") {
                refused += 1
                latest = String(line)
                continue
            }
            if mentions(line, others) && !mentions(line, own) { continue }
            kept.append(String(line))
        }
        if refused > 0 {
            kept.append("(\(refused) channel\(refused == 1 ? "" : "s") the server could not open, from probes and clients of a target that does not answer; the latest: \(latest))")
        }
        return kept
    }

    /// A heading and the latest `budget` lines of the host's ssh log about tunnel `name`'s own forwards; empty
    /// when there are none (or the tunnel has no row yet).
    static func sshSection(_ name: String, store: Store, paths: FwdPaths, budget: Int) throws -> [String] {
        guard let row = try store.tunnel(name) else { return [] }
        let log = paths.sshLog(host: row.host)
        // The end only: the log may hold a MiB (LogFile.cap).
        let marks = { (t: TunnelStatus) in t.forwards.compactMap { f -> String? in
            guard let spec = try? ForwardSpec.parse(f.spec, kind: f.kind) else { return nil }
            if case .unix(let path) = spec.listen { return path }
            return spec.listenPort.map(String.init)
        } }
        let others = try store.tunnels().filter { $0.host == row.host && $0.name != name }.flatMap(marks)
        let lines = Array(sshLines(LogFile.tail(log), own: marks(row), others: others).suffix(budget))
        return lines.isEmpty ? [] : ["--- ssh messages for \(row.host) about \(name) (\(log)), latest last:"] + lines
    }

    func run() async throws {
        let context = Context.current()
        let store = try Store(path: context.paths.database)
        if let name, try store.tunnel(name) == nil {
            let config = try? context.loadConfig()
            if config?.tunnel(named: name) == nil {
                let known = try store.tunnels().map(\.name) + (config?.tunnels.map(\.name) ?? [])
                throw ConfigError.unknownName(name, suggestion: ConfigError.closest(to: name, in: known))
            }
        }
        var events = try store.events(tunnel: name, after: 0, limit: 1_000_000)
        if let since = since.flatMap({ Self.moment($0) }) { events = events.filter { $0.time >= since } }
        if json {
            Swift.print(try JSONOutput.encode(events.suffix(lines).map(EventJSON.init)))
            return
        }
        // With NAME, up to a third of the lines (at most 20, and a heading) go to ssh's own messages.
        let ssh = try name.map { try Self.sshSection($0, store: store, paths: context.paths, budget: min(20, (lines - 1) / 3)) } ?? []
        events.suffix(lines - ssh.count).forEach(EventLine.print)
        ssh.forEach { Swift.print($0) }
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
                    EventLine.print(e)
                    last = e.id
                }
            }
            for e in try store.events(tunnel: name, after: last, limit: 1000) {
                EventLine.print(e)
                last = e.id
            }
            try await Task.sleep(for: .seconds(1))
        }
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
