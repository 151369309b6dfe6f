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
        events.forEach(EventLine.print)
        if let name, let host = try store.tunnel(name)?.host {
            let log = context.paths.sshLog(host: host)
            // The end only: the log may hold a MiB (LogFile.cap), and 20 lines are shown.
            let text = LogFile.tail(log)
            if !text.isEmpty {
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
