import Foundation
import FwdCore

/// What `fwd top` shows, as plain data: the rows the supervisor pushed, each tunnel's recent probe latencies,
/// the selection, the filter and the view. `handle` turns a key into a change and maybe an action, `frame`
/// draws it: both are pure, so the layout and the keys are tested without a terminal (FwdCLITests).
struct TopModel {
    enum View: Equatable {
        case table
        case help
        /// The named tunnel's log (`fwd logs NAME`), scrolled up by `scroll` lines from the end.
        case logs(String)
    }

    /// What a key asks the command to do beyond changing the model.
    enum Action: Equatable {
        case quit
        case up(String), down(String), reconnect(String)
        case openLogs(String)
        /// Send what was typed (`typed`) as the answer to the login question with this id, or cancel it.
        case answer(Int), cancelLogin(Int)
    }

    /// Latencies kept per tunnel: as many as the widest sparkline can show.
    static let historyLength = 60

    /// By name; every tunnel of the config, and any the supervisor still runs.
    private(set) var rows: [TunnelStatus] = []
    /// Each tunnel's latest probe latencies, oldest first; nil for a round without one (not connected, no answer).
    private(set) var history: [String: [Double?]] = [:]
    var selected: String?
    var filter = ""
    /// `/` was pressed: keys edit the filter until Enter or Esc.
    var editingFilter = false
    var view: View = .table
    var logLines: [String] = []
    var logScroll = 0
    /// The outcome of the last action, or what is going on ("taking wiki down…").
    var message: String?
    /// Whether a supervisor pushes rows now; without one, nothing runs.
    var connected = false
    /// Login questions for this view's user, the first one shown; what is typed for it, as bytes the command
    /// zeroes once sent (never drawn unless the question echoes).
    var questions: [LoginQuestion] = []
    var typed: [UInt8] = []

    /// A question's ssh exited: it goes, and what was typed for it with it.
    mutating func withdraw(_ id: Int) {
        if questions.first?.id == id { forgetTyped() }
        questions.removeAll { $0.id == id }
    }

    mutating func forgetTyped() {
        for i in typed.indices { typed[i] = 0 }
        typed.removeAll()
    }

    /// Replaces the rows (the first read, or after the config changed), keeping the histories of tunnels that stay.
    mutating func reset(_ rows: [TunnelStatus]) {
        self.rows = rows.map(Self.shown).sorted { $0.name < $1.name }
        history = history.filter { name, _ in rows.contains { $0.name == name } }
        keepSelection()
    }

    /// A row the supervisor pushed: replaces that tunnel's, and adds its latency to the history when the row is
    /// news of a probe round (its update time moved on). Returns whether more than the latency changed (the
    /// state, restarts, the error): that is drawn at once, a new latency with the next tick of the clock.
    @discardableResult
    mutating func update(_ pushed: TunnelStatus) -> Bool {
        let row = Self.shown(pushed)
        var changed = true
        if let i = rows.firstIndex(where: { $0.name == row.name }) {
            let old = rows[i]
            rows[i] = row
            changed = old.state != row.state || old.restarts != row.restarts || old.lastError != row.lastError
                || old.since != row.since || old.host != row.host || old.forwards.map(\.spec) != row.forwards.map(\.spec)
            guard row.updatedAt > old.updatedAt else { return changed }
        } else {
            rows.append(row)
            rows.sort { $0.name < $1.name }
            keepSelection()
        }
        var h = history[row.name] ?? []
        h.append(row.probeMs)
        if h.count > Self.historyLength { h.removeFirst(h.count - Self.historyLength) }
        history[row.name] = h
        return changed
    }

    /// The row as `fwd status` shows it: a latency only while connected, and only from probed forwards.
    static func shown(_ row: TunnelStatus) -> TunnelStatus {
        var r = row
        let live = r.state == .up || r.state == .degraded
        r.probeMs = live ? r.forwards.filter { $0.probe != .none }.compactMap(\.probeMs).max() : nil
        return r
    }

    /// The rows the filter lets through (a case-insensitive part of the name).
    var visible: [TunnelStatus] {
        filter.isEmpty ? rows : rows.filter { $0.name.localizedCaseInsensitiveContains(filter) }
    }

    private mutating func keepSelection() {
        let names = visible.map(\.name)
        if let selected, names.contains(selected) { return }
        selected = names.first
    }

    // MARK: keys

    mutating func handle(_ key: Key) -> Action? {
        if let question = questions.first {
            // A login question takes every key until it is answered or cancelled.
            switch key {
            case .enter: return .answer(question.id)
            case .escape, .interrupt: return .cancelLogin(question.id)
            case .backspace:
                guard !typed.isEmpty else { return nil }
                repeat { typed.removeLast() } while !typed.isEmpty && typed.last! & 0xc0 == 0x80
            case .char(let c):
                if typed.count + c.utf8.count <= AskpassWire.answerLimit { typed.append(contentsOf: c.utf8) }
            default: break
            }
            return nil
        }
        if editingFilter {
            switch key {
            case .enter: editingFilter = false
            case .escape:
                editingFilter = false
                filter = ""
            case .backspace: if !filter.isEmpty { filter.removeLast() }
            case .char(let c) where !c.isNewline: filter.append(c)
            case .interrupt: return .quit
            default: break
            }
            keepSelection()
            return nil
        }
        switch view {
        case .help:
            switch key {
            case .char("q"), .escape, .char("?"), .enter: view = .table
            case .interrupt: return .quit
            default: break
            }
            return nil
        case .logs:
            switch key {
            case .char("q"), .escape: view = .table
            case .up, .char("k"): logScroll = min(logScroll + 1, max(0, logLines.count - 1))
            case .down, .char("j"): logScroll = max(0, logScroll - 1)
            case .pageUp: logScroll = min(logScroll + 10, max(0, logLines.count - 1))
            case .pageDown: logScroll = max(0, logScroll - 10)
            case .interrupt: return .quit
            default: break
            }
            return nil
        case .table:
            break
        }
        let names = visible.map(\.name)
        let at = selected.flatMap { names.firstIndex(of: $0) }
        switch key {
        case .char("q"), .interrupt: return .quit
        case .up, .char("k"): if let at, at > 0 { selected = names[at - 1] }
        case .down, .char("j"): if let at, at + 1 < names.count { selected = names[at + 1] } else if at == nil { selected = names.first }
        case .char("?"): view = .help
        case .char("/"):
            editingFilter = true
        case .escape where !filter.isEmpty:
            filter = ""
            keepSelection()
        case .char("u"): return selected.map(Action.up)
        case .char("d"): return selected.map(Action.down)
        case .char("r"): return selected.map(Action.reconnect)
        case .char("l"), .enter:
            guard let selected else { return nil }
            view = .logs(selected)
            logScroll = 0
            return .openLogs(selected)
        default: break
        }
        return nil
    }

    // MARK: drawing

    /// The screen, exactly `height` lines, none wider than `width` characters (escapes aside).
    func frame(width: Int, height: Int, now: Date, terminal: Terminal) -> [String] {
        let width = max(width, 20), height = max(height, 5)
        var lines: [String]
        switch view {
        case .help: lines = helpLines(terminal)
        case .logs(let name): lines = logLinesShown(name, height: height, terminal)
        case .table: lines = tableLines(width: width, height: height, now: now, terminal)
        }
        lines = lines.prefix(height).map { Self.fit($0, width) }
        return lines + Array(repeating: "", count: height - lines.count)
    }

    private func tableLines(width: Int, height: Int, now: Date, _ t: Terminal) -> [String] {
        let shown = visible
        let counts = Dictionary(grouping: rows, by: \.state).mapValues(\.count)
        let summary = TunnelState.allCases.compactMap { s in counts[s].map { "\($0) \(s.rawValue)" } }.joined(separator: ", ")
        let clock = String(EventLine.formatter.string(from: now).dropFirst(11).prefix(8))
        let title = "fwd top · \(rows.count) tunnel\(rows.count == 1 ? "" : "s")\(summary.isEmpty ? "" : ": " + summary)"
        var out = [Self.fit(Self.spread(title, clock, width), width).styled(t, bold: true)]

        let nameWidth = min(max(4, shown.map(\.name.count).max() ?? 4), max(8, width / 4))
        let stateWidth = 12, uptimeWidth = 7, restartsWidth = 8, probeWidth = 8
        let fixed = 2 + nameWidth + 1 + stateWidth + 1 + uptimeWidth + 1 + restartsWidth + 1 + probeWidth + 1
        let sparkWidth = max(0, min(Self.historyLength, width - fixed))
        func pad(_ s: String, _ n: Int, right: Bool = false) -> String {
            let c = Terminal.cut(s, to: n)
            let fill = String(repeating: " ", count: max(0, n - c.count))
            return right ? fill + c : c + fill
        }
        let header = "  " + pad("NAME", nameWidth) + " " + pad("STATE", stateWidth) + " " + pad("UPTIME", uptimeWidth, right: true)
            + " " + pad("RESTARTS", restartsWidth, right: true) + " " + pad("PROBE", probeWidth, right: true)
            + (sparkWidth >= 6 ? " " + pad("RECENT", sparkWidth) : "")
        out.append(t.paint(Self.fit(header, width), .dim))

        // Rows, then three lines below them: the selected tunnel's detail, its note, and the keys; a login
        // question takes as many as it needs instead (up to half the screen).
        let asking = questionLines(t)
        let below = asking.isEmpty ? 3 : min(asking.count, max(3, height / 2))
        let room = max(1, height - out.count - below)
        let at = selected.flatMap { s in shown.firstIndex { $0.name == s } } ?? 0
        let first = min(max(0, at - room + 1), max(0, shown.count - room))
        for r in shown.dropFirst(first).prefix(room) {
            let isSelected = r.name == selected
            let live = r.state == .up || r.state == .degraded
            let uptime = live ? StatusCommand.duration(now.timeIntervalSince(r.since)) : "-"
            let probe = r.probeMs.map { String(format: "%.1f ms", $0) } ?? "-"
            let spark = sparkWidth >= 6 ? " " + Self.sparkline(history[r.name] ?? [], width: sparkWidth) : ""
            let state = pad(t.label(r.state), stateWidth)
            let plainStart = (isSelected ? "> " : "  ") + pad(r.name, nameWidth) + " "
            let rest = " " + pad(uptime, uptimeWidth, right: true) + " " + pad(String(r.restarts), restartsWidth, right: true)
                + " " + pad(probe, probeWidth, right: true) + spark
            var line = plainStart + t.paint(state, Terminal.colour(r.state)) + Self.fit(rest, max(0, width - plainStart.count - stateWidth))
            if isSelected && t.styled { line = "\u{1b}[7m" + line.replacingOccurrences(of: "\u{1b}[0m", with: "\u{1b}[0m\u{1b}[7m") + "\u{1b}[0m" }
            out.append(line)
        }
        if shown.isEmpty {
            out.append(rows.isEmpty ? "  No tunnels are configured. `fwd add NAME --host HOST -L PORT:TARGET:PORT` adds one."
                                    : "  No tunnel's name contains \"\(filter)\" (Esc clears the filter).")
        }
        while out.count < height - below { out.append("") }
        if !asking.isEmpty { return out + asking.suffix(below).map { Self.fit($0, width) } }

        let row = shown.first { $0.name == selected }
        let forwards = row.map { StatusCommand.shown($0.forwards, compact: true).joined(separator: ", ") } ?? ""
        out.append(row.map { Self.fit("\($0.name) via \($0.host): \(forwards)", width) } ?? "")
        out.append(t.paint(Self.fit(note(row), width), row?.state == .needsAuth ? .yellow : .dim))
        out.append(Self.fit(footer(), width))
        return out
    }

    /// The open login question: ssh's messages and its question in its words, what is typed when it echoes,
    /// and the keys.
    private func questionLines(_ t: Terminal) -> [String] {
        guard let q = questions.first else { return [] }
        let words = TerminalPrompter.terminalText(q.messages + q.text).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var lines = ["login: \(q.host) asks for \(q.kind.noun)".styled(t, bold: true)] + words.filter { !$0.isEmpty }
        let shown = q.echo ? String(decoding: typed, as: UTF8.self) : ""
        if lines.count > 1 { lines[lines.count - 1] += shown } else { lines.append(shown) }
        let more = questions.count > 1 ? " · \(questions.count - 1) more waiting" : ""
        lines.append(t.paint("Enter sends · Esc cancels (the tunnel waits in needs-auth)\(q.echo ? "" : " · what you type is not shown")\(more)", .dim))
        return lines
    }

    /// Under the selected row: a login waiting for a person, the last action's outcome, or the last error.
    private func note(_ row: TunnelStatus?) -> String {
        if let message { return message }
        if !connected { return "no supervisor is running: nothing is up (`u` brings the selected tunnel up)" }
        guard let row else { return "" }
        if row.state == .needsAuth { return "login waiting: `u` logs in here (or `fwd up \(row.name)` on a terminal)" }
        return row.lastError.map { "↳ \($0)" } ?? ""
    }

    private func footer() -> String {
        if editingFilter { return "filter: \(filter)▏ (Enter keeps it, Esc clears it)" }
        let keys = "u up  d down  r reconnect  l logs  / filter  ? help  q quit"
        return filter.isEmpty ? keys : "[\(filter)] " + keys
    }

    private func helpLines(_ t: Terminal) -> [String] {
        [
            "fwd top: every tunnel, live, as the supervisor pushes each change".styled(t, bold: true),
            "",
            "  ↑ ↓  j k    select a tunnel",
            "  u           bring it up (fwd up NAME)",
            "  d           take it down (fwd down NAME)",
            "  r           check its master now, reconnect if the path is gone",
            "  l  Enter    its log: events and its own ssh lines (fwd logs NAME)",
            "  /           filter by name; Enter keeps the filter, Esc clears it",
            "  ?           this help",
            "  q  Ctrl-C   quit",
            "",
            "STATE and UPTIME (time connected) are those of `fwd status`. RESTARTS:",
            "of the master. PROBE: the latest probe latency while connected. RECENT:",
            "the latest probes as a sparkline (a blank: a round without one).",
            "Connections and traffic are not shown yet: fwd does not count them",
            "until its own listener carries the forwards.",
            "A login that needs a person (a password, a passphrase, a code, a host key)",
            "is asked here; a tunnel in needs-auth logs in again with `u`.",
            "",
            "q or Esc goes back.",
        ]
    }

    private func logLinesShown(_ name: String, height: Int, _ t: Terminal) -> [String] {
        let room = height - 2
        let end = max(0, logLines.count - logScroll)
        let shown = logLines[max(0, end - room)..<end]
        return ["log of \(name) (fwd logs \(name)), latest last".styled(t, bold: true)]
            + shown + Array(repeating: "", count: max(0, room - shown.count))
            + [t.paint("↑ ↓ scroll · q or Esc back", .dim)]
    }

    // MARK: pieces

    /// Latencies as bars ▁…█ scaled between the window's lowest and highest; a blank where a round had none.
    static func sparkline(_ samples: [Double?], width: Int) -> String {
        let bars: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]
        let window = samples.suffix(width)
        let values = window.compactMap { $0 }
        guard let low = values.min(), let high = values.max() else { return String(repeating: " ", count: min(width, window.count)) }
        return String(window.map { sample -> Character in
            guard let v = sample else { return " " }
            guard high > low else { return bars[0] }
            return bars[min(bars.count - 1, Int((v - low) / (high - low) * Double(bars.count - 1) + 0.5))]
        })
    }

    /// `left` and `right` on one line of `width`, with spaces between.
    static func spread(_ left: String, _ right: String, _ width: Int) -> String {
        let gap = width - left.count - right.count
        return gap >= 1 ? left + String(repeating: " ", count: gap) + right : left
    }

    /// A line cut to `width` visible characters; escape sequences are kept whole and do not count.
    static func fit(_ line: String, _ width: Int) -> String {
        guard line.contains("\u{1b}") else { return Terminal.cut(line, to: width) }
        var out = "", visible = 0, inEscape = false, cut = false
        for c in line {
            if inEscape {
                out.append(c)
                if c.isLetter { inEscape = false }
            } else if c == "\u{1b}" {
                out.append(c)
                inEscape = true
            } else if visible < width {
                out.append(c)
                visible += 1
            } else {
                cut = true
            }
        }
        return cut ? out + "\u{1b}[0m" : out
    }
}

private extension String {
    func styled(_ t: Terminal, bold: Bool) -> String { t.styled && bold ? "\u{1b}[1m\(self)\u{1b}[0m" : self }
}

/// One key from the terminal.
enum Key: Equatable {
    case char(Character)
    case up, down, pageUp, pageDown, enter, escape, backspace
    /// Ctrl-C: the terminal is raw, so it arrives as a byte.
    case interrupt

    /// The keys in `bytes`, read at once from a raw terminal: escape sequences of arrows and page keys, Enter,
    /// Backspace, Ctrl-C, and UTF-8 characters. A lone ESC is Escape; sequences this does not know are skipped.
    static func parse(_ bytes: [UInt8]) -> [Key] {
        var keys: [Key] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            switch b {
            case 0x1b:
                guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "[") || bytes[i + 1] == UInt8(ascii: "O") else {
                    keys.append(.escape)
                    i += 1
                    continue
                }
                // CSI: parameters, then one final byte in 0x40…0x7e.
                var j = i + 2
                while j < bytes.count, !(0x40...0x7e).contains(bytes[j]) { j += 1 }
                guard j < bytes.count else { return keys }
                let params = String(decoding: bytes[(i + 2)..<j], as: UTF8.self)
                switch (bytes[j], params) {
                case (UInt8(ascii: "A"), _): keys.append(.up)
                case (UInt8(ascii: "B"), _): keys.append(.down)
                case (UInt8(ascii: "~"), "5"): keys.append(.pageUp)
                case (UInt8(ascii: "~"), "6"): keys.append(.pageDown)
                default: break
                }
                i = j + 1
            case 0x0d, 0x0a: keys.append(.enter); i += 1
            case 0x7f, 0x08: keys.append(.backspace); i += 1
            case 0x03: keys.append(.interrupt); i += 1
            case 0x00..<0x20: i += 1
            default:
                // One UTF-8 character: its length from the first byte.
                let length = b < 0xc0 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4
                let end = min(bytes.count, i + length)
                if let c = String(decoding: bytes[i..<end], as: UTF8.self).first { keys.append(.char(c)) }
                i = end
            }
        }
        return keys
    }
}
