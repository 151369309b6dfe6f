import Foundation

/// Edits fwd.toml as text, so comments and formatting the user wrote survive. Every edit is checked by parsing
/// the result before it is written (atomically): a refused or broken edit leaves the file as it was.
package enum ConfigEditor {
    /// Replaces the config file atomically, keeping its mode (0600 for a new file, its directory 0700).
    package static func save(_ text: String, to path: String) throws {
        try FileSystem.makePrivateDirectory((path as NSString).deletingLastPathComponent)
        try FileSystem.writeAtomically(text, to: path, mode: FileSystem.mode(of: path) ?? 0o600)
    }

    /// The TOML table for a new tunnel.
    package static func table(for tunnel: Tunnel) -> String {
        var out = "[tunnels.\(tunnel.name)]\nhost = \(quote(tunnel.host))\n"
        for kind in ForwardKind.allCases {
            let specs = tunnel.written.filter { $0.kind == kind }.map { quote($0.text) }
            guard !specs.isEmpty else { continue }
            out += "\(kind.rawValue) = " + (specs.count == 1 ? specs[0] : "[\(specs.joined(separator: ", "))]") + "\n"
        }
        if let probe = tunnel.probe { out += "probe = \(quote(probe.rawValue))\n" }
        if !tunnel.domains.isEmpty { out += "domains = [\(tunnel.domains.map(quote).joined(separator: ", "))]\n" }
        if let target = tunnel.probeTarget { out += "probe_target = \(quote(target.description))\n" }
        if tunnel.isPublic { out += "public = true\n" }
        if tunnel.autostart { out += "autostart = true\n" }
        return out
    }

    /// Appends `table` to the config text and returns the new text, after checking that the result parses and
    /// defines `name` — or throws, changing nothing.
    package static func appending(_ table: String, named name: String, to text: String, path: String) throws(ConfigError) -> (text: String, config: FwdConfig) {
        let before = try ConfigLoader.parse(text, path: path)
        if before.tunnel(named: name) != nil || before.group(named: name) != nil || before.hosts[name] != nil {
            throw .refused("\"\(name)\" is already defined in \(path); pick another name or `fwd rm \(name)` first")
        }
        var result = text
        if !result.isEmpty && !result.hasSuffix("\n") { result += "\n" }
        if !result.isEmpty && !result.hasSuffix("\n\n") { result += "\n" }
        result += table
        let after = try ConfigLoader.parse(result, path: path)
        guard after.tunnel(named: name) != nil else {
            throw .refused("internal error: the new table for \"\(name)\" did not parse back; nothing was written")
        }
        return (result, after)
    }

    /// Removes the `[tunnels.NAME]` table: from its header to the line before the next table header, plus the
    /// comment lines directly above it. Refuses when a group still names the tunnel.
    package static func removing(_ name: String, from text: String, path: String) throws(ConfigError) -> String {
        let config = try ConfigLoader.parse(text, path: path)
        guard config.tunnel(named: name) != nil else {
            throw .unknownName(name, suggestion: ConfigError.closest(to: name, in: config.tunnels.map(\.name)))
        }
        let groups = config.groups.filter { $0.members.contains(name) }.map(\.name)
        guard groups.isEmpty else {
            throw .refused("tunnel \"\(name)\" is in group \(groups.map { "\"\($0)\"" }.joined(separator: ", ")); remove it from [groups] first, then `fwd rm \(name)`")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let headers = ["[tunnels.\(name)]", "[tunnels.\"\(name)\"]", "[tunnels.'\(name)']"]
        guard let start = lines.firstIndex(where: { line in
            let t = line.trimmingCharacters(in: .whitespaces)
            return headers.contains { t == $0 || t.hasPrefix($0 + " ") || t.hasPrefix($0 + "#") }
        }) else {
            throw .refused("tunnel \"\(name)\" is not written as a [tunnels.\(name)] table; remove it by hand (`fwd edit`)")
        }
        var end = start + 1
        while end < lines.count, !lines[end].trimmingCharacters(in: .whitespaces).hasPrefix("[") { end += 1 }
        // Comments right above the next table belong to it, not to the one removed.
        while end - 1 > start, lines[end - 1].trimmingCharacters(in: .whitespaces).hasPrefix("#") { end -= 1 }
        var first = start
        while first > 0, lines[first - 1].trimmingCharacters(in: .whitespaces).hasPrefix("#") { first -= 1 }
        lines.removeSubrange(first..<end)
        // Collapse the blank lines left where the table was.
        while first > 0, first < lines.count, lines[first].trimmingCharacters(in: .whitespaces).isEmpty,
              lines[first - 1].trimmingCharacters(in: .whitespaces).isEmpty {
            lines.remove(at: first)
        }
        let result = lines.joined(separator: "\n")
        let after = try ConfigLoader.parse(result, path: path)
        guard after.tunnel(named: name) == nil, after.tunnels.count == config.tunnels.count - 1 else {
            throw .refused("tunnel \"\(name)\" could not be removed cleanly (keys outside its table?); remove it by hand (`fwd edit`)")
        }
        return result
    }

    /// A TOML basic string. Validated values never hold control characters, but escape anyway.
    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f: out += String(format: "\\u%04X", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
