/// One problem in a config file, located at file:line:column.
package struct Diagnostic: Sendable, Equatable, CustomStringConvertible {
    package var file: String
    package var line: Int
    package var column: Int
    package var message: String

    package var description: String { "\(file):\(line):\(column): \(message)" }
}

package enum ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file has problems; nothing was changed anywhere.
    case invalid([Diagnostic])
    /// A tunnel or group name on the command line that the config does not define.
    case unknownName(String, suggestion: String?)
    /// The file could not be read or written.
    case io(path: String, reason: String)
    /// A command that edits the config refuses what it was asked to do.
    case refused(String)

    package var description: String {
        switch self {
        case .invalid(let diagnostics):
            return diagnostics.map { "\($0)" }.joined(separator: "\n")
        case .unknownName(let name, let suggestion):
            let hint = suggestion.map { "; did you mean \"\($0)\"?" } ?? "; `fwd list` shows the configured tunnels and groups"
            return "no tunnel or group named \"\(Validation.printable(name))\"\(hint)"
        case .io(let path, let reason):
            return "\(path): \(reason)"
        case .refused(let message):
            return message
        }
    }

    /// The candidate closest to `word` by edit distance, when it is close enough to be a likely typo.
    package static func closest(to word: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(word.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(1, min(3, word.count / 3)) ? best.0 : nil
    }

    /// Edit distance where swapping two neighbouring characters counts as one edit (the commonest typo).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[a.count][b.count]
    }
}
