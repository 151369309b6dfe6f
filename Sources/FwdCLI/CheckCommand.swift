import ArgumentParser
import Foundation
import FwdCore

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
            print(try JSONOutput.encode(rows.map { StatusJSON($0) }))
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
