/// Finds where a key path sits in TOML source text.
/// TOMLKit reports positions only for syntax errors, so semantic errors (a bad forward spec, an unknown key)
/// are located here by scanning table headers and `key =` lines, including keys of one-line inline tables.
struct TOMLLocator {
    struct Position: Equatable { var line: Int; var column: Int }

    private var positions: [[String]: Position] = [:]
    private let lines: [String]

    init(_ text: String) {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        var table: [String] = []
        for (index, line) in lines.enumerated() {
            let chars = Array(line.unicodeScalars)
            var i = 0
            while i < chars.count, chars[i] == " " || chars[i] == "\t" { i += 1 }
            guard i < chars.count else { continue }
            if chars[i] == "[" {
                let arrayTable = i + 1 < chars.count && chars[i + 1] == "["
                var j = i + (arrayTable ? 2 : 1)
                if let keys = Self.parseKey(chars, &j) {
                    table = keys
                    positions[keys] = positions[keys] ?? Position(line: index + 1, column: i + 1)
                }
                continue
            }
            var j = i
            guard let keys = Self.parseKey(chars, &j), j < chars.count, chars[j] == "=" else { continue }
            let path = table + keys
            positions[path] = positions[path] ?? Position(line: index + 1, column: i + 1)
            recordInlineTable(chars, from: j + 1, path: path, line: index + 1)
        }
    }

    /// The position of the deepest known prefix of `path` (a key's own line when known, else its table).
    func position(of path: [String]) -> Position {
        var p = path
        while !p.isEmpty {
            if let found = positions[p] { return found }
            p.removeLast()
        }
        return Position(line: 1, column: 1)
    }

    /// The position of `needle` in the value of `path` (searching the key's line and the lines after it,
    /// for multi-line arrays), else the key's own position.
    func position(of path: [String], value needle: String) -> Position {
        let start = position(of: path)
        guard !needle.isEmpty, positions[path] != nil else { return start }
        for lineIndex in (start.line - 1)..<min(lines.count, start.line + 200) {
            let line = lines[lineIndex]
            let from = lineIndex == start.line - 1 ? line.index(line.startIndex, offsetBy: start.column - 1) : line.startIndex
            if let r = line[from...].range(of: needle) {
                return Position(line: lineIndex + 1, column: line.distance(from: line.startIndex, to: r.lowerBound) + 1)
            }
        }
        return start
    }

    private mutating func recordInlineTable(_ chars: [Unicode.Scalar], from start: Int, path: [String], line: Int) {
        var j = start
        while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
        guard j < chars.count, chars[j] == "{" else { return }
        j += 1
        while j < chars.count {
            while j < chars.count, chars[j] == " " || chars[j] == "\t" || chars[j] == "," { j += 1 }
            guard j < chars.count, chars[j] != "}" else { return }
            let keyColumn = j + 1
            guard let keys = Self.parseKey(chars, &j), j < chars.count, chars[j] == "=" else { return }
            positions[path + keys] = positions[path + keys] ?? Position(line: line, column: keyColumn)
            j += 1
            // Skip the value: a string (with escapes) or anything up to the next comma or brace.
            while j < chars.count, chars[j] == " " { j += 1 }
            if j < chars.count, chars[j] == "\"" || chars[j] == "'" {
                let quote = chars[j]
                j += 1
                while j < chars.count, chars[j] != quote {
                    if quote == "\"" && chars[j] == "\\" { j += 1 }
                    j += 1
                }
                j += 1
            } else {
                while j < chars.count, chars[j] != ",", chars[j] != "}" { j += 1 }
            }
        }
    }

    /// Parses `a.b."c d"` up to `]` or `=`; leaves `j` on that character.
    private static func parseKey(_ chars: [Unicode.Scalar], _ j: inout Int) -> [String]? {
        var keys: [String] = []
        while true {
            while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
            guard j < chars.count else { return nil }
            var key = ""
            if chars[j] == "\"" || chars[j] == "'" {
                let quote = chars[j]
                j += 1
                while j < chars.count, chars[j] != quote {
                    if quote == "\"" && chars[j] == "\\", j + 1 < chars.count { j += 1 }
                    key.unicodeScalars.append(chars[j])
                    j += 1
                }
                guard j < chars.count else { return nil }
                j += 1
            } else {
                while j < chars.count, chars[j].properties.isAlphabetic || ("0"..."9").contains(chars[j]) || chars[j] == "_" || chars[j] == "-" {
                    key.unicodeScalars.append(chars[j])
                    j += 1
                }
                guard !key.isEmpty else { return nil }
            }
            keys.append(key)
            while j < chars.count, chars[j] == " " || chars[j] == "\t" { j += 1 }
            guard j < chars.count else { return nil }
            if chars[j] == "." { j += 1; continue }
            if chars[j] == "]" || chars[j] == "=" { return keys }
            return nil
        }
    }
}
