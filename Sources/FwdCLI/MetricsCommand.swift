import ArgumentParser
import Foundation
import FwdCore

struct MetricsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print the metrics in the Prometheus text format.",
        discussion: """
        The same text the supervisor serves on [metrics] listen = "127.0.0.1:9412" (or a UNIX socket path) in \
        fwd.toml: each tunnel's state, probes and restarts, each host's master, and counters that survive a \
        restart. With no supervisor running, the recorded counters with nothing up. Example: \
        fwd metrics > /var/lib/node_exporter/textfile/fwd.prom
        """
    )

    func run() async throws {
        let context = Context.current()
        if Control.runningPID(context.paths) != nil,
           case .lines(let text) = try Control.request(ControlRequest(op: .metrics), paths: context.paths) {
            print(text.joined(), terminator: "")
            return
        }
        let store = try Store(path: context.paths.database)
        print(try MetricsBoard.offline(store, version: FwdVersion.current).exposition(), terminator: "")
    }
}
