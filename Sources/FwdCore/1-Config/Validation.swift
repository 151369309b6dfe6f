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
    /// `%` only in an IPv6 zone inside brackets (`[fe80::1%eth0]`): ssh expands `%` tokens in HostName and in
    /// the command it builds from ProxyJump (docs/architecture.md, "ssh_config quoting and % tokens").
    package static func hostProblem(_ value: String) -> String? {
        guard !value.isEmpty else { return "a host cannot be empty" }
        guard !value.hasPrefix("-") else { return "host \"\(printable(value))\" must not start with '-' (ssh would read it as an option)" }
        guard value.utf8.count <= 255 else { return "host \"\(printable(value))\" is longer than 255 characters" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:[]%".utf8)
        if let bad = value.utf8.first(where: { !allowed.contains($0) }) {
            return "host \"\(printable(value))\" contains \(describe(bad)); expected an alias, hostname, IP address or user@host[:port]"
        }
        if value.contains("%"), !hasOnlyZonePercent(value) {
            return "host \"\(printable(value))\" contains '%', which ssh expands as a token; '%' may only start an IPv6 zone in brackets, like [fe80::1%eth0]"
        }
        return nil
    }

    /// One hop of `jump` (ssh's ProxyJump). ssh pastes each hop into a shell command and expands `%` tokens in
    /// it (`%k` is the HostKeyAlias, `%h` the hostname), so no `%` at all: not even an IPv6 zone, which ssh
    /// would also read as a token there.
    package static func jumpHopProblem(_ value: String) -> String? {
        if value.contains("%") {
            return "jump host \"\(printable(value))\" contains '%'; ssh expands '%' tokens in the shell command it builds from ProxyJump, so a jump host cannot have one (not even an IPv6 zone: use a hostname)"
        }
        return hostProblem(value)
    }

    /// `%` only as `[v6addr%zone]`: the zone after the address's hex digits and colons, letters, digits, '.',
    /// '_' and '-' up to the closing bracket.
    static func hasOnlyZonePercent(_ value: String) -> Bool {
        var rest = Substring(value)
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        guard rest.hasPrefix("["), let close = rest.firstIndex(of: "]") else { return false }
        let inside = rest[rest.index(after: rest.startIndex)..<close]
        guard !rest[close...].contains("%"), let percent = inside.firstIndex(of: "%") else { return false }
        let address = inside[..<percent], zone = inside[inside.index(after: percent)...]
        let hex = Set("0123456789abcdefABCDEF:.".utf8)
        return address.contains(":") && address.utf8.allSatisfy(hex.contains) && !zone.isEmpty
            && zone.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// A login name for `User`.
    package static func userProblem(_ value: String) -> String? {
        guard !value.isEmpty else { return "user cannot be empty" }
        guard !value.hasPrefix("-") else { return "user \"\(printable(value))\" must not start with '-'" }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$".utf8)
        if let bad = value.utf8.first(where: { !allowed.contains($0) }) {
            return "user \"\(printable(value))\" contains \(describe(bad)); expected a login name"
        }
        // `$` only ends a name (Samba machine accounts, `host$`): a shell reads `$NAME` where ssh pastes `%r`.
        if let dollar = value.firstIndex(of: "$"), value.index(after: dollar) != value.endIndex {
            return "user \"\(printable(value))\" has a '$' before its end; a '$' may only end a login name"
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

    /// What an option's value may look like. Every kind is a strict character set, and none has a quote, a
    /// backslash, `%`, `#`, `=`, or a shell character (`| & ; < > $ ( ) \``): nothing in `options` can reach a
    /// shell through a command ssh builds, or split into a second directive.
    enum ValueKind: Sendable, Equatable {
        /// `yes` or `no`.
        case yesNo
        /// One of these words (compared without case).
        case choice([String])
        /// A decimal number in the range.
        case number(ClosedRange<Int>)
        /// A comma-separated list of algorithm or method names, optionally after a `+`, `-` or `^`.
        case list
        /// A name: letters, digits, '.', '_' and '-', starting with a letter or digit (HostKeyAlias, an interface).
        case name
        /// An IP address or host name (BindAddress).
        case address
        /// Words of letters and digits separated by single spaces (IPQoS, RekeyLimit).
        case words
        /// Environment variable names separated by spaces; `*` and `?` as ssh's patterns (SendEnv). The names
        /// are matched by ssh against its own environment and never reach a shell.
        case envNames
        /// Domain names separated by spaces (CanonicalDomains).
        case domains
    }

    /// The ssh_config keywords fwd passes through `options`, each reviewed against ssh_config(5) and readconf.c
    /// of OpenSSH: none runs a command, loads code, reads or writes files of its choosing, weakens host-key
    /// checking, or does what fwd does itself. docs/configuration.md ("options") lists them; the keys are
    /// lowercased keywords, the values the spelling and the value kind.
    static let allowedOptions: [String: (keyword: String, kind: ValueKind)] = {
        let entries: [(String, ValueKind)] = [
            ("AddKeysToAgent", .choice(["yes", "no", "ask", "confirm"])),
            ("AddressFamily", .choice(["any", "inet", "inet6"])),
            ("BindAddress", .address),
            ("BindInterface", .name),
            ("CanonicalDomains", .domains),
            ("CanonicalizeFallbackLocal", .yesNo),
            ("CanonicalizeHostname", .choice(["yes", "no", "always", "none"])),
            ("CanonicalizeMaxDots", .number(0...16)),
            ("CASignatureAlgorithms", .list),
            ("Ciphers", .list),
            ("Compression", .yesNo),
            ("ConnectionAttempts", .number(1...100)),
            ("ConnectTimeout", .number(1...600)),
            ("FingerprintHash", .choice(["md5", "sha256"])),
            ("ForwardX11Timeout", .number(0...2_147_483)),
            ("ForwardX11Trusted", .yesNo),
            ("GSSAPIAuthentication", .yesNo),
            ("GSSAPIDelegateCredentials", .yesNo),
            ("HashKnownHosts", .yesNo),
            ("HostbasedAcceptedAlgorithms", .list),
            ("HostbasedAuthentication", .yesNo),
            ("HostKeyAlgorithms", .list),
            ("HostKeyAlias", .name),
            ("IdentitiesOnly", .yesNo),
            ("IPQoS", .words),
            ("KbdInteractiveAuthentication", .yesNo),
            ("KbdInteractiveDevices", .list),
            ("KexAlgorithms", .list),
            ("LogLevel", .choice(["ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3"])),
            ("MACs", .list),
            ("NumberOfPasswordPrompts", .number(1...10)),
            ("PasswordAuthentication", .yesNo),
            ("PreferredAuthentications", .list),
            ("PubkeyAcceptedAlgorithms", .list),
            ("PubkeyAuthentication", .choice(["yes", "no", "unbound", "host-bound"])),
            ("RekeyLimit", .words),
            ("RequiredRSASize", .number(1024...16384)),
            ("SendEnv", .envNames),
            ("ServerAliveCountMax", .number(1...100)),
            ("ServerAliveInterval", .number(0...3600)),
            ("TCPKeepAlive", .yesNo),
        ]
        return Dictionary(uniqueKeysWithValues: entries.map { ($0.0.lowercased(), (keyword: $0.0, kind: $0.1)) })
    }()

    /// Keywords that are refused with a reason and what to use instead. Any other keyword not in
    /// `allowedOptions` is refused as unknown.
    static let refusedOptions: [String: String] = {
        let runs = "it runs a command"
        let hostKeys = "it weakens or replaces host-key checking, and fwd never does that; ssh's own checks against known_hosts stay in force"
        let fwds = "fwd sets it on every master itself"
        let forwards = "write forwards in a [tunnels.NAME] table (local, remote, dynamic)"
        let session = "fwd's masters run no session (ssh -N); `fwd ssh HOST` starts one when you need it"
        let entries: [(String, String)] = [
            ("ProxyCommand", "\(runs); use `jump` for a jump host"),
            ("LocalCommand", runs),
            ("PermitLocalCommand", "it enables LocalCommand, which runs a command"),
            ("KnownHostsCommand", runs),
            ("XAuthLocation", "ssh runs that program for X11 forwarding; use `forward_x11` with the system's xauth"),
            ("RemoteCommand", session),
            ("RequestTTY", session),
            ("SessionType", session),
            ("StdinNull", session),
            ("EscapeChar", session),
            ("EnableEscapeCommandline", session),
            ("SetEnv", "\(session); SendEnv passes variables from your environment"),
            ("PKCS11Provider", "it loads a library into ssh; set it in ~/.ssh/config"),
            ("SecurityKeyProvider", "it loads a library into ssh; set it in ~/.ssh/config"),
            ("SmartcardDevice", "it loads a library into ssh; set it in ~/.ssh/config"),
            ("EnableSSHKeysign", "it runs ssh-keysign, and ssh reads it from /etc/ssh/ssh_config only"),
            ("ProxyUseFdpass", "it belongs with ProxyCommand; use `jump` for a jump host"),
            ("Include", "it reads other files into the config; put it in ~/.ssh/config"),
            ("Match", "it starts a new block; fwd writes one Host block per host"),
            ("Host", "it starts a new block; fwd writes one Host block per host"),
            ("Tag", "it selects Match blocks; put it in ~/.ssh/config"),
            ("IgnoreUnknown", "fwd passes only the options it knows"),
            ("StrictHostKeyChecking", hostKeys),
            ("UserKnownHostsFile", hostKeys),
            ("GlobalKnownHostsFile", hostKeys),
            ("CheckHostIP", hostKeys),
            ("VerifyHostKeyDNS", hostKeys),
            ("NoHostAuthenticationForLocalhost", hostKeys),
            ("UpdateHostKeys", "it rewrites known_hosts with the keys a server offers; fwd never changes host keys, set it in ~/.ssh/config"),
            ("RevokedHostKeys", "it names a file ssh reads; set it in ~/.ssh/config"),
            ("ControlMaster", fwds),
            ("ControlPath", fwds),
            ("ControlPersist", fwds),
            ("ExitOnForwardFailure", fwds),
            ("StreamLocalBindMask", "it sets the mode of the UNIX sockets a forward listens on; fwd keeps ssh's 0177, so only you can connect"),
            ("StreamLocalBindUnlink", fwds),
            ("ForkAfterAuthentication", "fwd keeps each master in the foreground to watch it"),
            ("ClearAllForwardings", forwards),
            ("LocalForward", forwards),
            ("RemoteForward", forwards),
            ("DynamicForward", forwards),
            ("PermitRemoteOpen", "fwd does not restrict remote forwards' targets; write a plain remote forward"),
            ("GatewayPorts", "write an explicit bind address in the forward and `public = true` instead"),
            ("Tunnel", "fwd forwards ports, not tun devices"),
            ("TunnelDevice", "fwd forwards ports, not tun devices"),
            ("BatchMode", "fwd sets it on each ssh it runs: on for probes and mux commands, off for a master whose login may need a person"),
            ("HostName", "use the `hostname` key"),
            ("User", "use the `user` key"),
            ("Port", "use the `port` key"),
            ("ProxyJump", "use the `jump` key"),
            ("IdentityFile", "use the `identity` key"),
            ("CertificateFile", "it names a file ssh reads; set it in ~/.ssh/config (fwd copies it into the tunnel's block)"),
            ("IdentityAgent", "it names a socket ssh connects to; set it in ~/.ssh/config (fwd copies it into the tunnel's block)"),
            ("ForwardAgent", "use the `forward_agent` key"),
            ("ForwardX11", "use the `forward_x11` key"),
        ]
        return Dictionary(uniqueKeysWithValues: entries.map { ($0.0.lowercased(), $0.1) })
    }()

    package static func optionNameProblem(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard let first = bytes.first, isAlpha(first), bytes.allSatisfy(isAlnum) else {
            return "option name \"\(printable(name))\" is not an ssh_config keyword (letters and digits only)"
        }
        if let why = refusedOptions[name.lowercased()] {
            return "option \(name) is not allowed in fwd's options: \(why)"
        }
        guard allowedOptions[name.lowercased()] != nil else {
            return "option \(name) is not one of the options fwd passes through; docs/configuration.md (\"options\") lists them, and anything else goes in ~/.ssh/config"
        }
        return nil
    }

    /// An option value: one line in the strict character set of the keyword's kind (`ValueKind`).
    package static func optionValueProblem(_ name: String, _ value: String) -> String? {
        guard !value.isEmpty else { return "option \(name) needs a value" }
        guard let (keyword, kind) = allowedOptions[name.lowercased()] else { return optionNameProblem(name) }
        let shown = "option \(keyword) value \"\(printable(value))\""
        if let bad = value.unicodeScalars.first(where: { !($0.isASCII && (isAlnum(UInt8($0.value)) || " ,.@_+-^:*?".unicodeScalars.contains($0))) }) {
            return "\(shown) contains \(describe(scalar: bad)); \(expected(kind))"
        }
        if value.contains("  ") || value.hasPrefix(" ") || value.hasSuffix(" ") {
            return "\(shown) has stray spaces; \(expected(kind))"
        }
        let words = value.split(separator: " ").map(String.init)
        let ok: Bool
        switch kind {
        case .yesNo: ok = ["yes", "no"].contains(value.lowercased())
        case .choice(let options): ok = options.contains { $0.lowercased() == value.lowercased() }
        case .number(let range): ok = value.utf8.count <= 9 && value.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } && Int(value).map(range.contains) == true
        case .list:
            let body = value.first.map { "+-^".contains($0) } == true ? value.dropFirst() : Substring(value)
            ok = words.count == 1 && !body.isEmpty && body.split(separator: ",", omittingEmptySubsequences: false).allSatisfy { item in
                !item.isEmpty && item.utf8.allSatisfy { isAlnum($0) || "@._-+".utf8.contains($0) }
            }
        case .name: ok = words.count == 1 && nameProblem(value) == nil
        case .address: ok = words.count == 1 && !value.hasPrefix("-") && value.utf8.allSatisfy { isAlnum($0) || ".:_-".utf8.contains($0) }
        case .words: ok = words.count <= 2 && value.utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: " ") }
        case .envNames: ok = words.allSatisfy { w in !w.hasPrefix("-") && w.utf8.allSatisfy { isAlnum($0) || "_*?".utf8.contains($0) } }
        case .domains: ok = words.allSatisfy { domainProblem($0) == nil && !$0.contains("*") }
        }
        return ok ? nil : "\(shown) is not allowed; \(expected(kind))"
    }

    static func expected(_ kind: ValueKind) -> String {
        switch kind {
        case .yesNo: "expected yes or no"
        case .choice(let options): "expected one of: \(options.joined(separator: ", "))"
        case .number(let range): "expected a number from \(range.lowerBound) to \(range.upperBound)"
        case .list: "expected a comma-separated list of names (letters, digits, '@', '.', '_', '-', '+'), optionally after '+', '-' or '^'"
        case .name: "expected one name of letters, digits, '.', '_' and '-'"
        case .address: "expected an IP address or host name"
        case .words: "expected one or two words of letters and digits"
        case .envNames: "expected environment variable names (letters, digits, '_', and '*' or '?' as patterns) separated by spaces"
        case .domains: "expected domain names separated by spaces"
        }
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
