import ArgumentParser
import Foundation
import FwdCore

struct ReloadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Apply the config file to the running supervisor now.",
        discussion: """
        A changed tunnel is changed on its live master (no reconnect), a removed one goes down, and the rest \
        are not touched. The supervisor also does this by itself after every save; a file that \
        does not parse changes nothing and its error is shown here, in `fwd status` and in `fwd logs`. \
        Example: fwd reload
        """
    )

    @Flag(name: .shortAndLong, help: "Print nothing on success.")
    var quiet = false

    func run() async throws {
        let context = Context.current()
        guard Control.runningPID(context.paths) != nil else {
            if !quiet { print("No supervisor is running, so nothing runs to reload; `fwd up NAME` applies the file when it starts one.") }
            return
        }
        try Control.request(ControlRequest(op: .reload), paths: context.paths, timeout: 60)
        guard !quiet else { return }
        let wanted = try Store(path: context.paths.database).desiredUp().map(\.name)
        print("Applied \(context.paths.config): \(wanted.isEmpty ? "no tunnel is wanted up" : "\(wanted.count) tunnel\(wanted.count == 1 ? "" : "s") wanted up (\(wanted.joined(separator: ", ")))").")
    }
}
