import Foundation
@testable import FwdCLI
import FwdCore
import Testing

/// `fwd top`'s model and layout: pure functions, so every size and key is checked without a terminal. The
/// end-to-end tests (FwdIntegrationTests/TopTests) drive the real binary in tmux.
@Suite struct TopViewTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func row(_ name: String, _ state: TunnelState, ms: Double? = nil, error: String? = nil, updated: Double = 0) -> TunnelStatus {
        TunnelStatus(name: name, host: "lab", desired: .up, state: state, since: now.addingTimeInterval(-3700), restarts: 2,
                     lastError: error,
                     forwards: [ForwardStatus(kind: .local, spec: "127.0.0.1:8080:wiki.internal:80", probe: .http, probeMs: ms)],
                     updatedAt: now.addingTimeInterval(updated))
    }

    var plain: Terminal {
        var t = Terminal(fd: -1, environment: [:])
        t.styled = false
        return t
    }

    var coloured: Terminal {
        var t = Terminal(fd: -1, environment: [:])
        t.styled = true
        return t
    }

    /// Visible characters of a line: escape sequences left out.
    func visible(_ line: String) -> String {
        line.replacing(/\u{1b}\[[0-9;?]*[A-Za-z]/, with: "")
    }

    @Test func everyFrameHasExactlyTheScreensLinesAndNoneIsWider() {
        var model = TopModel()
        model.reset((1...40).map { row("tunnel-with-a-rather-long-name-\($0)", $0 % 3 == 0 ? .degraded : .up, ms: Double($0),
                                        error: String(repeating: "a long error ", count: 20)) })
        model.connected = true
        for (width, height) in [(80, 24), (100, 30), (40, 10), (200, 60)] {
            for terminal in [plain, coloured] {
                for view in [TopModel.View.table, .help, .logs("tunnel-with-a-rather-long-name-1")] {
                    model.view = view
                    model.logLines = (1...100).map { "event \($0) " + String(repeating: "x", count: 300) }
                    let lines = model.frame(width: width, height: height, now: now, terminal: terminal)
                    #expect(lines.count == height, "\(width)×\(height) \(view)")
                    for line in lines { #expect(visible(line).count <= width, "\(width)×\(height) \(view): \(visible(line))") }
                }
            }
        }
    }

    @Test func theTableShowsStateUptimeRestartsProbeAndTheKeys() {
        var model = TopModel()
        model.reset([row("wiki", .up, ms: 12.5), row("docs", .down, ms: 3)])
        model.connected = true
        let lines = model.frame(width: 80, height: 24, now: now, terminal: plain)
        #expect(lines[0].hasPrefix("fwd top · 2 tunnels: 1 up, 1 down"))
        let wiki = lines.first { $0.dropFirst(2).hasPrefix("wiki ") } ?? ""
        #expect(wiki.contains(" up "), "\(wiki)")
        #expect(wiki.contains("1h1m"), "uptime: \(wiki)")
        #expect(wiki.contains("12.5 ms"), "\(wiki)")
        let docs = lines.first { $0.dropFirst(2).hasPrefix("docs ") } ?? ""
        #expect(docs.hasPrefix("> "), "the first row (by name) is selected: \(docs)")
        #expect(!docs.contains("ms"), "a down tunnel shows no latency: \(docs)")
        #expect(lines[21].contains("-L 8080:wiki.internal:80"), "the selected tunnel's forwards, without the default bind: \(lines[21])")
        #expect(lines[23].contains("q quit"))
    }

    @Test func noColourMeansNoEscapesAndColourKeepsTheWidth() {
        var model = TopModel()
        model.reset([row("wiki", .up, ms: 1), row("docs", .failed, error: "refused")])
        model.connected = true
        #expect(!model.frame(width: 80, height: 24, now: now, terminal: plain).joined().contains("\u{1b}"))
        let styled = model.frame(width: 80, height: 24, now: now, terminal: coloured)
        #expect(styled.joined().contains("\u{1b}[32m"), "up is green")
        #expect(styled.joined().contains("\u{1b}[7m"), "the selection is in reverse video")
    }

    @Test func aLoginWaitingForAPersonIsShown() {
        var model = TopModel()
        model.reset([row("wiki", .needsAuth)])
        model.connected = true
        let lines = model.frame(width: 80, height: 24, now: now, terminal: plain)
        #expect(lines[22].contains("login waiting: `u` logs in here"), "\(lines[22])")
    }

    @Test func aLoginQuestionTakesTheKeysAndHidesWhatIsTyped() {
        var model = TopModel()
        model.reset([row("wiki", .starting)])
        model.connected = true
        model.questions = [LoginQuestion(id: 7, host: "lab", text: "Enter passphrase for key '/k': ", kind: .keyPassphrase, echo: false,
                                         messages: "")]
        for key in Key.parse(Array("sécret".utf8)) + [.backspace] { #expect(model.handle(key) == nil, "typed, not a command") }
        #expect(String(decoding: model.typed, as: UTF8.self) == "sécre")
        let lines = model.frame(width: 80, height: 24, now: now, terminal: plain)
        #expect(lines.contains { $0.contains("login: lab asks for a key passphrase") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("Enter passphrase for key '/k': ") })
        #expect(!lines.joined().contains("sécre"), "a secret is never drawn")
        #expect(lines.count == 24 && lines[23].contains("Esc cancels"))
        #expect(model.handle(.enter) == .answer(7))
        #expect(model.handle(.escape) == .cancelLogin(7))
        model.withdraw(7)
        #expect(model.questions.isEmpty && model.typed.isEmpty)
        #expect(model.handle(.char("q")) == .quit, "keys are commands again")

        model.questions = [LoginQuestion(id: 8, host: "lab", text: "The authenticity of host 'lab' can't be established.\nAre you sure you want to continue connecting (yes/no/[fingerprint])? ",
                                         kind: .hostKey, echo: true, messages: "")]
        for key in Key.parse(Array("yes".utf8)) { _ = model.handle(key) }
        let asked = model.frame(width: 80, height: 24, now: now, terminal: plain)
        #expect(asked.contains { $0.hasPrefix("Are you sure you want to continue connecting") && $0.hasSuffix("yes") }, "a yes/no question echoes: \(asked)")
        #expect(asked.contains { $0.contains("authenticity of host") })
    }

    @Test func theSparklineScalesBetweenTheLowestAndHighestAndLeavesGaps() {
        #expect(TopModel.sparkline([1, 2, 3, nil, 8], width: 10) == "▁▂▃ █")
        #expect(TopModel.sparkline([5, 5], width: 10) == "▁▁")
        #expect(TopModel.sparkline([nil, nil], width: 10) == "  ")
        #expect(TopModel.sparkline((1...100).map(Double.init), width: 4) == "▁▃▆█")
    }

    @Test func pushedRowsBuildTheHistoryOnePerProbeRound() {
        var model = TopModel()
        model.reset([row("wiki", .up)])
        let latencyOnly = model.update(row("wiki", .up, ms: 10, updated: 1))
        #expect(!latencyOnly, "only the latency changed: drawn on the next tick")
        model.update(row("wiki", .up, ms: 10, updated: 1))  // the same round again: no new sample
        let newState = model.update(row("wiki", .degraded, ms: 20, updated: 2))
        #expect(newState, "a new state is drawn at once")
        model.update(row("wiki", .down, ms: 30, updated: 3))  // not connected: a gap, not a stale figure
        #expect(model.history["wiki"] == [10, 20, nil])
        for i in 0..<100 { model.update(row("wiki", .up, ms: Double(i), updated: Double(10 + i))) }
        #expect(model.history["wiki"]?.count == TopModel.historyLength)
        model.update(row("new", .up, ms: 1, updated: 1))
        #expect(model.rows.map(\.name) == ["new", "wiki"], "a row pushed for a new tunnel joins, in name order")
    }

    @Test func keysMoveTheSelectionActOnItFilterAndSwitchViews() {
        var model = TopModel()
        model.reset([row("alpha", .up), row("beta", .up), row("gamma", .down)])
        #expect(model.selected == "alpha")
        #expect(model.handle(.down) == nil)
        #expect(model.selected == "beta")
        _ = model.handle(.char("j")); _ = model.handle(.char("j"))
        #expect(model.selected == "gamma", "stops at the last row")
        _ = model.handle(.char("k"))
        #expect(model.handle(.char("d")) == .down("beta"))
        #expect(model.handle(.char("u")) == .up("beta"))
        #expect(model.handle(.char("r")) == .reconnect("beta"))

        for key in [Key.char("/"), .char("g"), .char("a")] { _ = model.handle(key) }
        #expect(model.editingFilter)
        #expect(model.visible.map(\.name) == ["gamma"])
        #expect(model.selected == "gamma", "the selection follows the filter")
        #expect(model.handle(.char("q")) == nil, "q is typed into the filter while editing it")
        _ = model.handle(.backspace)
        _ = model.handle(.enter)
        #expect(!model.editingFilter && model.filter == "ga")
        _ = model.handle(.escape)
        #expect(model.filter.isEmpty && model.visible.count == 3)

        _ = model.handle(.char("?"))
        #expect(model.view == .help)
        #expect(model.handle(.char("d")) == nil, "keys do nothing to tunnels while the help shows")
        _ = model.handle(.escape)
        #expect(model.view == .table)
        #expect(model.handle(.char("l")) == .openLogs("gamma"))
        #expect(model.view == .logs("gamma"))
        _ = model.handle(.char("q"))
        #expect(model.view == .table, "q leaves the log, not fwd top")
        #expect(model.handle(.char("q")) == .quit)
        #expect(model.handle(.interrupt) == .quit)
    }

    @Test func keysAreReadFromRawBytes() {
        #expect(Key.parse(Array("\u{1b}[A\u{1b}[B\u{1b}OA".utf8)) == [.up, .down, .up])
        #expect(Key.parse(Array("\u{1b}".utf8)) == [.escape])
        #expect(Key.parse(Array("\u{1b}[5~\u{1b}[6~\u{1b}[H".utf8)) == [.pageUp, .pageDown], "unknown sequences are skipped")
        #expect(Key.parse(Array("jq\r\u{7f}\u{3}".utf8)) == [.char("j"), .char("q"), .enter, .backspace, .interrupt])
        #expect(Key.parse(Array("é/".utf8)) == [.char("é"), .char("/")])
    }

    @Test func fitCutsVisibleCharactersAndKeepsEscapesWhole() {
        #expect(TopModel.fit("abcdef", 4) == "abc…")
        let styled = "\u{1b}[32mabcdef\u{1b}[0m"
        #expect(TopModel.fit(styled, 3) == "\u{1b}[32mabc\u{1b}[0m\u{1b}[0m")
        #expect(TopModel.fit(styled, 10) == styled)
    }
}
