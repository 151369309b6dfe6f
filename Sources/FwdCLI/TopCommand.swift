import ArgumentParser
import Foundation
import FwdCore

struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "A live full-screen view of every tunnel: state, uptime, probe latency with recent probes, restarts.",
        discussion: """
        The view changes as the supervisor pushes each change (nothing is polled; the clock ticks once a \
        second). Keys: ↑/↓ or j/k select, u up, d down, r reconnect, l the tunnel's log, / filter by name, \
        ? help, q quit. A login that needs a person (a password, a passphrase, a code, a host key) is asked \
        in the view and answered there; `u` on a tunnel in needs-auth logs in again. \
        Connections and traffic are not shown yet. Needs a terminal; NO_COLOR turns colour off.
        """
    )

    func run() throws {
        guard isatty(STDIN_FILENO) == 1, isatty(STDOUT_FILENO) == 1 else {
            throw CommandFailure("fwd top draws a live view on a terminal, and standard input or output is not one; use `fwd status` or `fwd status --json` in scripts")
        }
        let session = try TopSession(context: Context.current())
        guard RawTerminal.enter() else { throw CommandFailure("fwd top cannot put the terminal in raw mode") }
        defer { RawTerminal.leave() }
        try session.run()
    }
}

/// What reaches the drawing loop from other threads: pushed rows and events (tagged with the stream they came
/// on, so a replaced stream's last words are ignored), and the outcome of an action.
private enum TopNews {
    case row(stream: Int, TunnelStatus)
    case event(stream: Int, Event)
    case closed(stream: Int)
    case question(stream: Int, LoginQuestion)
    case withdrawn(stream: Int, Int)
    case finished(String)
}

/// A queue the loop drains when its pipe becomes readable: threads post, one byte wakes `poll`.
private final class TopInbox: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [TopNews] = []
    let readEnd: Int32
    private let writeEnd: Int32

    init() {
        var ends: [Int32] = [-1, -1]
        _ = pipe(&ends)
        for fd in ends {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        (readEnd, writeEnd) = (ends[0], ends[1])
    }

    func post(_ news: TopNews) {
        lock.withLock { items.append(news) }
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    func take() -> [TopNews] {
        var drain = [UInt8](repeating: 0, count: 256)
        while read(readEnd, &drain, drain.count) > 0 {}
        return lock.withLock {
            defer { items = [] }
            return items
        }
    }
}

/// A connection handed to its reader thread.
private final class StreamBox: @unchecked Sendable {
    let client: ControlClient
    init(_ client: ControlClient) { self.client = client }
}

/// The window size changed: the handler only writes a byte (async-signal-safe), the loop redraws.
nonisolated(unsafe) private var topResizeWrite: Int32 = -1

/// One `fwd top`: the model, the two streams from the supervisor (rows of every tunnel; events, for the log
/// view and to notice tunnels added or removed), and the loop that reads keys and draws.
private final class TopSession {
    let context: Context
    let store: Store
    let terminal = Terminal(fd: STDOUT_FILENO)
    let inbox = TopInbox()
    var model = TopModel()
    var stream = 0
    var rowsOpen = false
    /// The rows connection, which also carries login questions and their answers.
    var rowsStream: StreamBox?
    var eventStream: StreamBox?
    /// The log view's lines: the tunnel's events (more arrive while it is open) and its ssh lines.
    var logEvents: [String] = []
    var logSSH: [String] = []
    /// What is on the screen, line by line: only lines that changed are written again.
    var drawn: [String] = []
    var drawnSize = (columns: 0, rows: 0)
    var lastDraw = Date.distantPast
    let resizeRead: Int32

    init(context: Context) throws {
        self.context = context
        store = try Store(path: context.paths.database)
        var ends: [Int32] = [-1, -1]
        _ = pipe(&ends)
        for fd in ends {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        resizeRead = ends[0]
        topResizeWrite = ends[1]
        _ = signal(SIGWINCH) { _ in
            var byte: UInt8 = 1
            _ = write(topResizeWrite, &byte, 1)
        }
        try reload()
    }

    /// Reads every tunnel as `fwd status` does (the config's, and any still running), for the first frame and
    /// after the set of tunnels changed.
    func reload() throws {
        let shown = try StatusCommand.parse([]).rows(store, paths: context.paths)
        model.reset(shown.rows)
        model.connected = shown.supervisor != nil && rowsOpen
    }

    /// Opens the streams when a supervisor serves: the rows of every tunnel shown, and the events from now on.
    func connect() {
        stream += 1
        rowsOpen = false
        // The old streams end once the new ones are open: their readers return, and the supervisor forgets them.
        // Their asker goes last, so a login question open on it moves to the new one instead of being cancelled.
        let old = (rowsStream, eventStream)
        defer {
            old.0?.client.hangUp()
            old.1?.client.hangUp()
        }
        rowsStream = nil
        eventStream = nil
        // Questions on the old connection went with it (the supervisor moves them to the new one, or cancels).
        model.questions = []
        model.forgetTyped()
        let names = model.rows.map(\.name)
        // `prompt`: this view can ask its user, so a login that needs a person is asked here.
        guard let rows = try? ControlClient(paths: context.paths), (try? rows.send(ControlRequest(op: .rows, names: names, prompt: true))) != nil,
              (try? rows.reply(timeout: 5)) != nil else {
            model.connected = false
            return
        }
        rowsOpen = true
        model.connected = true
        let id = stream, inbox = self.inbox
        let rowBox = StreamBox(rows)
        rowsStream = rowBox
        Thread.detachNewThread {
            while let reply = try? rowBox.client.next(timeout: nil) {
                switch reply {
                case .tunnel(let row): inbox.post(.row(stream: id, row))
                case .prompt(let question): inbox.post(.question(stream: id, question))
                case .withdrawn(let q): inbox.post(.withdrawn(stream: id, q))
                default: break
                }
            }
            inbox.post(.closed(stream: id))
        }
        guard let events = try? ControlClient(paths: context.paths), let last = try? store.lastEventID(),
              (try? events.send(ControlRequest(op: .follow, after: last))) != nil, (try? events.reply(timeout: 5)) != nil else { return }
        let eventBox = StreamBox(events)
        eventStream = eventBox
        Thread.detachNewThread {
            while let reply = try? eventBox.client.next(timeout: nil) {
                if case .event(let e) = reply { inbox.post(.event(stream: id, e)) }
            }
        }
    }

    func run() throws {
        connect()
        draw(full: true)
        var input = [UInt8](repeating: 0, count: 512)
        var dirty = false
        while true {
            let now = Date()
            // The clock ticks on the second; a pushed change of state is drawn at most four times a second.
            var wait = 1 - now.timeIntervalSince1970.truncatingRemainder(dividingBy: 1)
            if dirty { wait = min(wait, max(0, 0.25 - now.timeIntervalSince(lastDraw))) }
            var fds = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: inbox.readEnd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: resizeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, nfds_t(fds.count), Int32((wait * 1000).rounded(.up)))
            if ready < 0 && errno != EINTR { throw CommandFailure("fwd top: poll failed: \(Posix.errorText())") }
            var urgent = false
            if fds[0].revents & Int16(POLLIN | POLLHUP) != 0 {
                let n = read(STDIN_FILENO, &input, input.count)
                if n == 0 { return }  // the terminal went away
                if n > 0 {
                    for key in Key.parse(Array(input.prefix(n))) {
                        if let action = model.handle(key) {
                            if action == .quit { return }
                            perform(action)
                        }
                    }
                    urgent = true
                }
            }
            if fds[1].revents != 0 {
                for news in inbox.take() { dirty = receive(news) || dirty }
            }
            if fds[2].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                while read(resizeRead, &drain, drain.count) > 0 {}
                urgent = true
            }
            let after = Date()
            let ticked = Int(after.timeIntervalSince1970) != Int(lastDraw.timeIntervalSince1970)
            if ticked && !rowsOpen {
                // No supervisor to push anything: look once a second whether one has started.
                if Control.runningPID(context.paths) != nil {
                    try? reload()
                    connect()
                }
            }
            if urgent || ticked || (dirty && after.timeIntervalSince(lastDraw) >= 0.25) {
                draw(full: false)
                dirty = false
            }
        }
    }

    /// Applies news to the model; whether the screen changes.
    func receive(_ news: TopNews) -> Bool {
        switch news {
        case .row(let id, let row) where id == stream:
            // A probe round's new latency waits for the clock's tick: one redraw a second however many rows come.
            return model.update(row)
        case .event(let id, let e) where id == stream:
            if case .logs(let name) = model.view, e.tunnel == name {
                logEvents.append(EventLine.text(e))
                model.logLines = logEvents + logSSH
            }
            // A tunnel added to or removed from the config: the set of rows changes, and the stream with it.
            let known = e.tunnel.map { name in model.rows.contains { $0.name == name } } ?? false
            if !known && (e.tunnel != nil || e.kind == .daemon) {
                let before = model.rows.map(\.name)
                try? reload()
                if model.rows.map(\.name) != before { connect() }
                drawn = []
            }
        case .question(let id, let question) where id == stream:
            model.questions.append(question)
        case .withdrawn(let id, let question) where id == stream:
            model.withdraw(question)
        case .closed(let id) where id == stream:
            // The supervisor stopped: nothing runs now, and the rows say so.
            rowsOpen = false
            try? reload()
            model.connected = false
            drawn = []
        case .finished(let message):
            model.message = message
            if !rowsOpen {
                try? reload()
                connect()
            }
        default:
            return false
        }
        return true
    }

    /// Runs the action as its own command would, on a thread of its own: `fwd up|down|reconnect NAME`, this
    /// binary, with no terminal of its own: a login that needs a person is asked in this view, which the
    /// supervisor knows can ask (its `rows` request says `prompt`).
    func perform(_ action: TopModel.Action) {
        let verb: String, name: String
        switch action {
        case .quit: return
        case .openLogs(let n):
            openLogs(n)
            return
        case .answer(let id):
            // Handed to the supervisor on the connection the question came on, then forgotten here.
            let answer = String(decoding: model.typed, as: UTF8.self)
            model.forgetTyped()
            model.withdraw(id)
            try? rowsStream?.client.send(PromptAnswer(id: id, answer: answer))
            model.message = "answer sent; logging in…"
            return
        case .cancelLogin(let id):
            model.withdraw(id)
            try? rowsStream?.client.send(PromptAnswer(id: id, cancel: true))
            model.message = "login cancelled"
            return
        case .up(let n): (verb, name) = ("up", n)
        case .down(let n): (verb, name) = ("down", n)
        case .reconnect(let n): (verb, name) = ("reconnect", n)
        }
        model.message = "fwd \(verb) \(name)…"
        // `fwd up` waits as long as a person may take to answer a login question here.
        let inbox = self.inbox, argv = [Executable.path, verb, name] + (verb == "up" ? ["--timeout", "600"] : [])
        Thread.detachNewThread {
            let line: String
            do {
                let (exit, output) = try ChildProcess.run(argv, timeout: 120)
                let last = output.split(whereSeparator: \.isNewline).last.map(String.init)
                line = exit == .exited(0) ? "fwd \(verb) \(name): \(last ?? "done")" : "fwd \(verb) \(name) failed: \(last ?? "\(exit)")"
            } catch {
                line = "fwd \(verb) \(name) failed: \(error)"
            }
            inbox.post(.finished(line))
        }
    }

    func openLogs(_ name: String) {
        logEvents = ((try? store.events(tunnel: name, after: 0, limit: 1_000_000)) ?? []).suffix(500).map(EventLine.text)
        logSSH = (try? LogsCommand.sshSection(name, store: store, paths: context.paths, budget: 20)) ?? []
        model.logLines = logEvents + logSSH
        if model.logLines.isEmpty { model.logLines = ["(no events for \(name) yet)"] }
    }

    /// Writes the frame: each line that differs from what is on the screen, or all after a resize.
    func draw(full: Bool) {
        let size = RawTerminal.size() ?? (80, 24)
        let resized = size.columns != drawnSize.columns || size.rows != drawnSize.rows
        let lines = model.frame(width: size.columns, height: size.rows, now: Date(), terminal: terminal)
        var out = full || resized ? "\u{1b}[H\u{1b}[2J" : ""
        for (i, line) in lines.enumerated() where full || resized || i >= drawn.count || drawn[i] != line {
            // Cleared before it is written: a line that fills the width leaves the cursor past its end, where
            // a clear would take its last character.
            out += "\u{1b}[\(i + 1);1H\u{1b}[2K" + line
        }
        if !out.isEmpty { RawTerminal.write(out) }
        drawn = lines
        drawnSize = size
        lastDraw = Date()
    }
}
