import ArgumentParser
import Foundation
import FwdCore

struct ListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List configured tunnels with their host, forwards and probe.",
        discussion: "Example: fwd list --json | jq -r '.[].name'"
    )

    @Flag(help: "Print a JSON array of tunnels.")
    var json = false

    func run() async throws {
        let config = try Context.current().loadConfig()
        if json {
            print(try JSONOutput.encode(config.tunnels.map { TunnelJSON($0, config: config) }))
            return
        }
        if config.tunnels.isEmpty {
            print("No tunnels in \(config.path). Add one with `fwd add NAME --host HOST -L 8080:target:80`.")
            return
        }
        var rows = [["NAME", "HOST", "FORWARDS", "PROBE"]]
        for t in config.tunnels {
            let forwards = t.written.map { "\($0.kind.flag) \($0.text)" }
            let probes = Array(Set(t.forwards.map { t.probe(for: $0).rawValue })).sorted()
            rows.append([t.name, t.host, forwards.joined(separator: ", "), probes.joined(separator: ",")])
        }
        print(Table.render(rows), terminator: "")
        if !config.groups.isEmpty {
            print("")
            for g in config.groups { print("group \(g.name): \(g.members.joined(separator: " "))") }
        }
    }
}

/// The JSON shape of a tunnel, shared by `list` and `show`.
struct TunnelJSON: Encodable {
    struct Forward: Encodable {
        var kind: String
        var spec: String
        var ssh_argument: String
        var probe: String
    }

    var name: String
    var host: String
    var forwards: [Forward]
    @JSONNull var probe: String?
    var `public`: Bool
    var autostart: Bool
    var groups: [String]

    init(_ t: Tunnel, config: FwdConfig) {
        name = t.name
        host = t.host
        forwards = t.forwards.map { Forward(kind: $0.kind.rawValue, spec: $0.text, ssh_argument: $0.sshArgument, probe: t.probe(for: $0).rawValue) }
        probe = t.probe?.rawValue
        `public` = t.isPublic
        autostart = t.autostart
        groups = config.groups.filter { $0.members.contains(t.name) }.map(\.name)
    }
}

enum JSONOutput {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// Plain aligned columns; widths count characters, and no colour codes are ever inside cells: `paint` colours a
/// cell (by row and column) after it is padded.
enum Table {
    static func render(_ rows: [[String]], paint: (_ row: Int, _ column: Int, _ padded: String) -> String = { $2 }) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = Array(repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.enumerated().map { r, row in
            row.enumerated().map { i, cell in
                paint(r, i, i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0))
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
