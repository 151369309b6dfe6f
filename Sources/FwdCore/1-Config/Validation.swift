import Foundation

/// The rules every name and value must pass before it reaches ssh_config or an ssh argv.
/// ssh_config is line-oriented and whitespace-separated, and ssh's getopt treats a leading `-` as an option,
/// so anything that could start a new directive or a new option is refused here, in one place.
package enum Validation {
    /// Tunnel, host and group names: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 characters.
    package static func nameProblem(_ name: String) -> String? {
        guard !name.isEmpty else { return "a name cannot be empty" }
        guard name.utf8.count <= 64 else { return "name \"\(printable(name))\" is longer than 64 characters" }
        let bytes = Array(name.utf8)
        guard isAlnum(bytes[0]) else {
            return "name \"\(printable(name))\" must start with a letter or digit"
        }
        guard bytes.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }) else {
            return "name \"\(printable(name))\" may only contain letters, digits, '.', '_' and '-'"
        }
        return nil
    }

    /// A host value: an ssh alias, a hostname, an IP address or `user@host[:port]`.
    /// Never starts with `-` (it would become an ssh option) and has no whitespace or control characters.
    package static func hostProblem(_ value: String) -> String? {
        guard !value.isEmpty else { return "a host cannot be empty" }
        guard !value.hasPrefix("-") else { return "host \"\(printable(value))\" must not start with '-' (ssh would read it as an option)" }
        guard value.utf8.count <= 255 else { return "host \"\(printable(value))\" is longer than 255 characters" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:[]%".utf8)
        if let bad = value.utf8.first(where: { !allowed.contains($0) }) {
            return "host \"\(printable(value))\" contains \(describe(bad)); expected an alias, hostname, IP address or user@host[:port]"
        }
        return nil
    }

    /// A login name for `User`.
    package static func userProblem(_ value: String) -> String? {
        guard !value.isEmpty else { return "user cannot be empty" }
        guard !value.hasPrefix("-") else { return "user \"\(printable(value))\" must not start with '-'" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$".utf8)
        if let bad = value.utf8.first(where: { !allowed.contains($0) }) {
            return "user \"\(printable(value))\" contains \(describe(bad)); expected a login name"
        }
        return nil
    }

    /// A file path written into ssh_config (IdentityFile). Quotes, control characters and a leading `-` are refused.
    package static func pathProblem(_ value: String) -> String? {
        guard !value.isEmpty else { return "a path cannot be empty" }
        guard !value.hasPrefix("-") else { return "path \"\(printable(value))\" must not start with '-'" }
        if let bad = value.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == "\"" || $0 == "'" || $0 == "#" || $0 == "\\" }) {
            return "path \"\(printable(value))\" contains \(describe(scalar: bad))"
        }
        return nil
    }

    /// Directives fwd will not pass through `options`: they run commands, load code, read other files,
    /// start new blocks, weaken host-key checking, or belong to fwd itself.
    static let forbiddenOptions: [String: String] = [
        "proxycommand": "it runs a command; use `jump` for a jump host",
        "localcommand": "it runs a command",
        "permitlocalcommand": "it enables LocalCommand",
        "remotecommand": "fwd tunnels run no remote command",
        "knownhostscommand": "it runs a command",
        "include": "it reads other files",
        "match": "it starts a new block",
        "host": "it starts a new block",
        "pkcs11provider": "it loads a library",
        "securitykeyprovider": "it loads a library",
        "proxyusefdpass": "it belongs with ProxyCommand",
        "controlmaster": "fwd manages the ControlMaster",
        "controlpath": "fwd manages the ControlPath",
        "controlpersist": "fwd manages the ControlMaster",
        "localforward": "write forwards in a [tunnels.NAME] table",
        "remoteforward": "write forwards in a [tunnels.NAME] table",
        "dynamicforward": "write forwards in a [tunnels.NAME] table",
        "stricthostkeychecking": "fwd never changes host-key checking",
        "userknownhostsfile": "fwd never changes host-key checking; set it in ~/.ssh/config",
        "globalknownhostsfile": "fwd never changes host-key checking; set it in ~/.ssh/config",
        "checkhostip": "fwd never changes host-key checking",
        "hostname": "use the `hostname` key",
        "user": "use the `user` key",
        "port": "use the `port` key",
        "proxyjump": "use the `jump` key",
        "identityfile": "use the `identity` key",
        "forwardagent": "use the `forward_agent` key",
        "forwardx11": "use the `forward_x11` key",
        "batchmode": "fwd always runs ssh in batch mode",
    ]

    package static func optionNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, isAlpha(first), bytes.allSatisfy(isAlnum) else {
            return "option name \"\(printable(name))\" is not an ssh_config keyword (letters and digits only)"
        }
        if let why = forbiddenOptions[name.lowercased()] {
            return "option \(name) is not allowed in fwd's options: \(why)"
        }
        return nil
    }

    /// An option value: one line, no quotes or comment characters that would change how ssh splits it.
    package static func optionValueProblem(_ name: String, _ value: String) -> String? {
        guard !value.isEmpty else { return "option \(name) needs a value" }
        guard !value.hasPrefix("-") else { return "option \(name) value \"\(printable(value))\" must not start with '-'" }
        if let bad = value.unicodeScalars.first(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == "\"" || $0 == "'" || $0 == "#" || $0 == "\\" || $0 == "=" }) {
            return "option \(name) value \"\(printable(value))\" contains \(describe(scalar: bad)); one plain value is expected"
        }
        if value.contains("  ") || value.hasPrefix(" ") || value.hasSuffix(" ") {
            return "option \(name) value \"\(printable(value))\" has stray spaces"
        }
        return nil
    }

    /// A name in a tunnel's `domains`: a DNS name (`wiki.example.com`), or `*.` and a DNS name for every name
    /// under it (`*.corp.lan`, as PAC's shExpMatch reads it). Letters, digits, '-' and '.' only, so the name
    /// is safe inside the PAC script's JavaScript strings.
    package static func domainProblem(_ value: String) -> String? {
        let expected = "expected a name like \"wiki.example.com\" or \"*.corp.lan\""
        guard !value.isEmpty else { return "a domain cannot be empty; \(expected)" }
        let name = value.hasPrefix("*.") ? String(value.dropFirst(2)) : value
        guard name.utf8.count <= 253 else { return "domain \"\(printable(value))\" is longer than 253 characters" }
        if name.contains("*") {
            return "domain \"\(printable(value))\" has a '*' other than a leading \"*.\"; \(expected)"
        }
        if let bad = name.utf8.first(where: { !isAlnum($0) && $0 != UInt8(ascii: "-") && $0 != UInt8(ascii: ".") }) {
            return "domain \"\(printable(value))\" contains \(describe(bad)); \(expected)"
        }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { return "domain \"\(printable(value))\" has an empty label (\"..\" or a '.' at either end); \(expected)" }
            if label.utf8.count > 63 { return "domain \"\(printable(value))\" has a label longer than 63 characters" }
            if label.hasPrefix("-") || label.hasSuffix("-") {
                return "domain \"\(printable(value))\" has a label that starts or ends with '-'; \(expected)"
            }
        }
        return nil
    }

    /// Shows control characters visibly so an error message never prints a raw newline or escape.
    package static func printable(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                out += "\\u{\(String(scalar.value, radix: 16))}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func isAlpha(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z"))
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        isAlpha(b) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }

    private static func describe(_ byte: UInt8) -> String {
        describe(scalar: Unicode.Scalar(byte))
    }

    private static func describe(scalar: Unicode.Scalar) -> String {
        switch scalar {
        case " ": return "a space"
        case "\n": return "a newline"
        case "\t": return "a tab"
        case _ where scalar.value < 0x20 || scalar.value == 0x7f: return "a control character"
        default: return "'\(scalar)'"
        }
    }
}
