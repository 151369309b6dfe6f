import ArgumentParser
import Foundation
import FwdCore

struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check ssh, the config, the Include line, permissions, sockets, ports and the supervisor.",
        discussion: """
        Each problem comes with how to fix it. Exits 1 when something is wrong, 0 otherwise; warnings do not \
        count. Changes nothing. Example: fwd doctor --verbose
        """
    )

    @Flag(help: "Print JSON: ok, and findings with check, status, message and fix.")
    var json = false

    @Flag(name: .shortAndLong, help: "Also print the checks that pass.")
    var verbose = false

    func run() async throws {
        let findings = await Doctor(paths: Context.current().paths).run()
        let problems = findings.filter { $0.status == .problem }.count
        if json {
            struct Report: Encodable {
                var ok: Bool
                var findings: [DoctorFinding]
            }
            print(try JSONOutput.encode(Report(ok: problems == 0, findings: findings)))
        } else {
            print(Self.render(findings, verbose: verbose, terminal: Terminal()), terminator: "")
        }
        if problems > 0 { throw ExitCode(1) }
    }

    static func render(_ findings: [DoctorFinding], verbose: Bool, terminal: Terminal) -> String {
        var out = ""
        for f in findings where verbose || f.status != .ok {
            let mark: String
            switch (f.status, terminal.styled) {
            case (.ok, true): mark = terminal.paint("✓", .green)
            case (.warning, true): mark = terminal.paint("!", .yellow)
            case (.problem, true): mark = terminal.paint("✗", .red)
            case (.ok, false): mark = "ok     "
            case (.warning, false): mark = "warning"
            case (.problem, false): mark = "problem"
            }
            let message = f.message.replacingOccurrences(of: "\n", with: "\n    ")
            out += "\(mark) \(f.check): \(message)\n"
            if let fix = f.fix, f.status != .ok { out += "    fix: \(fix)\n" }
        }
        let problems = findings.filter { $0.status == .problem }.count
        let warnings = findings.filter { $0.status == .warning }.count
        let passed = findings.count - problems - warnings
        if problems == 0 && warnings == 0 {
            out += "fwd doctor: everything looks fine (\(passed) checks passed)\n"
        } else {
            let counts = [problems > 0 ? "\(problems) problem\(problems == 1 ? "" : "s")" : nil,
                          warnings > 0 ? "\(warnings) warning\(warnings == 1 ? "" : "s")" : nil].compactMap { $0 }
            out += "fwd doctor: \(counts.joined(separator: ", ")); \(passed) checks passed\(verbose ? "" : " (--verbose shows them)")\n"
        }
        return out
    }
}
