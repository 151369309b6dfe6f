import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The host aliases a user can type, read from their ssh_config: the names on `Host` lines that are not patterns.
/// Used for completion, so it never throws and reads nothing but the files ssh itself would read.
package enum SSHConfigAliases {
    /// Aliases in `path` and in the files its `Include` lines name (relative names are under `~/.ssh`, as ssh
    /// reads them for a user config), in file order without duplicates. `skipping` leaves out files such as
    /// fwd's own fragment, whose Host blocks are tunnel names rather than hosts.
    package static func read(path: String, home: String, skipping: Set<String> = []) -> [String] {
        var seen = Set<String>()
        return walk(path: path, home: home, skipping: skipping).flatMap { parse($0.text).aliases }.filter { seen.insert($0).inserted }
    }

    /// `path` and every file its `Include` lines reach, with their text, in the order ssh reads them.
    package static func walk(path: String, home: String, skipping: Set<String> = []) -> [(path: String, text: String)] {
        var files: [(path: String, text: String)] = []
        var visited = skipping
        func visit(_ file: String, depth: Int) {
            // ssh stops at 16 levels; a loop must end.
            guard depth < 8, !visited.contains(file), let text = FileSystem.read(file) else { return }
            visited.insert(file)
            files.append((file, text))
            for include in parse(text).includes {
                for match in expand(include, home: home) { visit(match, depth: depth + 1) }
            }
        }
        visit(path, depth: 0)
        return files
    }

    /// The literal `Host` names and the `Include` arguments of one file.
    package static func parse(_ text: String) -> (aliases: [String], includes: [String]) {
        var aliases: [String] = []
        var includes: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            var words = arguments(String(line))
            guard !words.isEmpty else { continue }
            let keyword = words.removeFirst().lowercased()
            if keyword == "host" {
                aliases += words.filter { !$0.isEmpty && !$0.hasPrefix("!") && !$0.contains(where: { "*?".contains($0) }) }
            } else if keyword == "include" {
                includes += words
            }
        }
        return (aliases, includes)
    }

    /// Whether a `Host` line in one of `texts` matches `name` as ssh would (patterns with `*` and `?`, `!`
    /// negation, no case), not counting a line whose only positive pattern is a bare `*` (defaults for every
    /// host, not a host of the user's). `Match` blocks are not counted: they need ssh to evaluate.
    package static func defines(_ name: String, in texts: [String]) -> Bool {
        let name = name.lowercased()
        for text in texts {
            for line in text.split(whereSeparator: \.isNewline) {
                var words = arguments(String(line))
                guard !words.isEmpty, words.removeFirst().lowercased() == "host" else { continue }
                let patterns = words.map { $0.lowercased() }
                let positive = patterns.filter { !$0.hasPrefix("!") }
                guard positive.contains(where: { $0 != "*" }) else { continue }
                if patterns.contains(where: { $0.hasPrefix("!") && wildcardMatch(name, $0.dropFirst()) }) { continue }
                if positive.contains(where: { $0 != "*" && wildcardMatch(name, Substring($0)) }) { return true }
            }
        }
        return false
    }

    /// ssh's match_pattern: `*` any run, `?` one character.
    static func wildcardMatch(_ name: String, _ pattern: Substring) -> Bool {
        let s = Array(name.utf8), p = Array(pattern.utf8)
        var memo = [Int: Bool]()
        func match(_ i: Int, _ j: Int) -> Bool {
            if let known = memo[i * (p.count + 1) + j] { return known }
            let result: Bool
            if j == p.count { result = i == s.count }
            else if p[j] == UInt8(ascii: "*") { result = match(i, j + 1) || (i < s.count && match(i + 1, j)) }
            else { result = i < s.count && (p[j] == UInt8(ascii: "?") || p[j] == s[i]) && match(i + 1, j + 1) }
            memo[i * (p.count + 1) + j] = result
            return result
        }
        return match(0, 0)
    }

    /// Splits a config line as ssh does: `Keyword args` or `Keyword=args`, words split on blanks, double quotes
    /// group, `#` starts a comment.
    static func arguments(_ line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false
        var started = false
        for c in line {
            if c == "\"" {
                quoted.toggle()
                started = true
            } else if !quoted && c == "#" && !started {
                break
            } else if !quoted && (c == " " || c == "\t" || (c == "=" && words.isEmpty)) {
                if started { words.append(current) }
                current = ""
                started = false
            } else {
                current.append(c)
                started = true
            }
        }
        if started { words.append(current) }
        return words
    }

    /// An Include argument as ssh resolves it: `~` is the home directory, a relative name is under `~/.ssh`,
    /// and glob patterns expand to the matching files, sorted.
    static func expand(_ pattern: String, home: String) -> [String] {
        var path = pattern
        if path.hasPrefix("~/") { path = home + path.dropFirst(1) }
        if !path.hasPrefix("/") { path = home + "/.ssh/" + path }
        var g = glob_t()
        defer { globfree(&g) }
        guard glob(path, 0, nil, &g) == 0 else { return [] }
        return (0..<Int(g.gl_pathc)).compactMap { g.gl_pathv[$0].map { String(cString: $0) } }
    }
}
