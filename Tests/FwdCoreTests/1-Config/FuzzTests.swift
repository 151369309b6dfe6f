import Foundation
import Testing
@testable import FwdCore

/// Seeded property tests over hostile input: the config loader, the forward-spec parser and the ssh stderr
/// classifier get many generated and mutated inputs each. None may crash or hang; every rejection must be the
/// typed error with a location; nothing accepted may put a dangerous directive into the ssh_config fwd writes.
/// FWD_FUZZ_CASES overrides the number of cases per property (default 20 000), FWD_FUZZ_SEED the seed.
@Suite struct FuzzTests {
    static let cases = Int(ProcessInfo.processInfo.environment["FWD_FUZZ_CASES"] ?? "") ?? 20_000
    static let seed = UInt64(ProcessInfo.processInfo.environment["FWD_FUZZ_SEED"] ?? "") ?? 0xf0_22ed
    static let path = "/home/u/.config/fwd/fwd.toml"

    static let validConfigs = [
        """
        [hosts.office]                 # optional
        hostname = "a.example.com"
        user = "alice"
        port = 22
        jump = "bastion,b2.example.com"
        identity = "~/.ssh/id_ed25519"
        forward_agent = false
        forward_x11 = true
        options = { Compression = "yes", ServerAliveInterval = 5, SendEnv = "LANG LC_ALL" }
        alive_interval = 1
        alive_count = 2
        connect_timeout = 5

        [tunnels.intranet-wiki]
        host = "office"
        local = "8080:wiki.lan:80"
        probe = "http"

        [tunnels.laptop-db]
        host = "office"
        remote = ["127.0.0.1:15432:localhost:5432", "0:localhost:22"]

        [tunnels.socks]
        host = "alice@b.example.com:2222"
        dynamic = "1080"
        public = false
        autostart = true

        [groups]
        work = ["intranet-wiki", "socks"]
        """,
        """
        # comment only at the top
        [tunnels.a]
        host = "h"
        local = ["[::1]:8080:[2001:db8::1]:80", "/tmp/l.sock:/run/t.sock"]
        probe = "none"

        [tunnels.'b.c']
        host = "h"
        dynamic = "127.0.0.1:1080"
        """,
        """
        tunnels.x.host = "h"
        tunnels.x.local = "1:h:1"
        hosts.h.hostname = "192.0.2.1"
        hosts.h.options.Ciphers = "aes256-gcm@openssh.com"
        groups.g = ["x"]
        """,
    ]

    /// Pieces that stress TOML and fwd's own checks: quoting, escapes, tables, control bytes, injections.
    static let pieces: [String] = [
        "[", "]", "[[", "]]", "{", "}", "\"", "'", "\"\"\"", "'''", "=", ",", ".", "#", "\n", "\r\n", "\t", " ", "\\",
        "\\n", "\\u0000", "\\u000a", "\u{0}", "\u{7f}", "\u{1b}[31m", "é", "\u{301}", "\u{202e}", "🦊", "\u{feff}",
        "-", "--", "0", "-1", "65536", "1e999", "99999999999999999999", "true", "false", "1979-05-27T07:32:00Z", "inf", "nan",
        "tunnels", "hosts", "groups", "local", "remote", "dynamic", "host", "probe", "options", "public",
        "ProxyCommand", "LocalCommand", "Include", "Match", "Host *", "-oProxyCommand=sh", "$(touch /tmp/x)", "`id`",
        "/etc/passwd", "../..", "/tmp/../etc/x.sock", ":", "::1", "[::1]", "*", "8080:wiki.lan:80",
        String(repeating: "a", count: 300), String(repeating: "[", count: 50), String(repeating: "{x=", count: 40),
    ]

    // MARK: config loader

    @Test func mutatedConfigsAreParsedOrRejectedWithALocation() throws {
        var rng = FuzzRandom(seed: Self.seed)
        var stats = Stats()
        try boundedTime("config mutations") { current in
            for i in 0..<Self.cases {
                let base = rng.pick(Self.validConfigs)
                let text = Self.mutate(base, rng: &rng)
                current.set(text)
                stats.count(try Self.checkConfig(text, case: i))
            }
        }
        print("fwd fuzz: ConfigLoader.parse — \(Self.cases) mutated configs: \(stats.accepted) accepted, \(stats.rejected) rejected with file:line:col, slowest \(stats.slowestMs) ms")
        #expect(stats.accepted > Self.cases / 50, "mutations should leave some configs valid")
        #expect(stats.rejected > Self.cases / 2)
    }

    @Test func randomBytesAreRejectedWithALocation() throws {
        var rng = FuzzRandom(seed: Self.seed ^ 0xb17e5)
        var stats = Stats()
        try boundedTime("random config bytes") { current in
            for i in 0..<Self.cases {
                let length = rng.int(0...(rng.chance(90) ? 200 : 4000))
                let bytes: [UInt8] = (0..<length).map { _ in
                    // Mostly printable ASCII and TOML punctuation, some raw bytes (invalid UTF-8 included).
                    rng.chance(80) ? UInt8(rng.int(0x20...0x7e)) : rng.chance(50) ? rng.pick(Array("[]=\"'\n#.{},".utf8)) : UInt8(rng.int(0...255))
                }
                let text = String(decoding: bytes, as: UTF8.self)
                current.set(text)
                stats.count(try Self.checkConfig(text, case: i))
            }
        }
        print("fwd fuzz: ConfigLoader.parse — \(Self.cases) random inputs: \(stats.accepted) accepted, \(stats.rejected) rejected with file:line:col, slowest \(stats.slowestMs) ms")
        #expect(stats.rejected > 0)
    }

    struct Outcome {
        var accepted: Bool
        var ms: Int
    }

    struct Stats {
        var accepted = 0, rejected = 0, slowestMs = 0
        mutating func count(_ o: Outcome) {
            if o.accepted { accepted += 1 } else { rejected += 1 }
            slowestMs = max(slowestMs, o.ms)
        }
    }

    /// Parses one input and checks the contract; returns whether it was accepted and how long it took.
    static func checkConfig(_ text: String, case i: Int) throws -> Outcome {
        if let trace = ProcessInfo.processInfo.environment["FWD_FUZZ_TRACE"] { try? text.write(toFile: trace, atomically: false, encoding: .utf8) }
        let start = ContinuousClock.now
        let result: Result<FwdConfig, ConfigError> = Result { () throws(ConfigError) in try ConfigLoader.parse(text, path: path) }
        let elapsed = ContinuousClock.now - start
        let ms = Int(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)
        #expect(ms < 2000, "case \(i) took \(ms) ms: \(String(reflecting: text.prefix(200)))")
        switch result {
        case .success(let config):
            checkRendering(config, source: text)
            return Outcome(accepted: true, ms: ms)
        case .failure(let error):
            guard case .invalid(let diagnostics) = error, !diagnostics.isEmpty else {
                Issue.record("case \(i): rejected without a location: \(error) for \(String(reflecting: text.prefix(200)))")
                return Outcome(accepted: false, ms: ms)
            }
            let lineCount = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count
            for d in diagnostics {
                let described = d.description
                let located = described.hasPrefix("\(path):\(d.line):\(d.column): ") && !d.message.isEmpty
                if !located || d.line < 1 || d.line > lineCount + 1 || d.column < 1 {
                    Issue.record("case \(i): bad diagnostic \(String(reflecting: described)) (\(lineCount) lines) for \(String(reflecting: text.prefix(200)))")
                }
                // The message is shown on a terminal: no raw control characters from the input.
                if described.unicodeScalars.contains(where: { $0.value < 0x20 && $0 != "\n" || $0.value == 0x7f }) {
                    Issue.record("case \(i): diagnostic prints a control character: \(String(reflecting: described))")
                }
            }
            return Outcome(accepted: false, ms: ms)
        }
    }

    /// Keywords that must never come out of a config fwd accepted: they run commands, load code, read files,
    /// open a new block or weaken host-key checking.
    static let dangerous: Set<String> = ["proxycommand", "localcommand", "permitlocalcommand", "remotecommand", "knownhostscommand",
                                         "include", "match", "pkcs11provider", "securitykeyprovider", "stricthostkeychecking",
                                         "userknownhostsfile", "globalknownhostsfile", "proxyusefdpass"]

    /// What fwd would write for an accepted config: one Host line per host and tunnel, every other line one
    /// indented `Keyword value` whose keyword is harmless.
    static func checkRendering(_ config: FwdConfig, source: String) {
        let paths = FwdPaths(config: path, stateDirectory: "/state", userSSHConfig: "/home/u/.ssh/config")
        let text = SSHConfigFiles.hostBlocks(config, paths: paths) + SSHConfigFiles.tunnelBlocks(config, paths: paths, resolved: [:])
        var hostLines = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("Host ") {
                hostLines += 1
                if line.dropFirst(5).contains(where: { $0 == " " || $0 == "\t" || $0 == "*" || $0 == "!" }) {
                    Issue.record("a Host line with a pattern: \(String(reflecting: String(line))) from \(String(reflecting: source.prefix(200)))")
                }
                continue
            }
            let keyword = line.drop { $0 == " " }.prefix { $0 != " " }.lowercased()
            if !line.hasPrefix("    ") || dangerous.contains(keyword) || line.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
                Issue.record("unsafe ssh_config line \(String(reflecting: String(line))) from \(String(reflecting: source.prefix(200)))")
            }
        }
        if hostLines != config.hosts.count + config.tunnels.count {
            Issue.record("\(hostLines) Host lines for \(config.hosts.count) hosts and \(config.tunnels.count) tunnels from \(String(reflecting: source.prefix(200)))")
        }
        for tunnel in config.tunnels {
            #expect(Validation.nameProblem(tunnel.name) == nil)
            // A forward always follows -L/-R/-D as its own argv element, so only whitespace or a host that ssh_config
            // would read as an option can hurt (a socket path may start with '-').
            for f in tunnel.forwards where f.sshArgument.contains(where: \.isWhitespace) || f.configLine.contains("\n") {
                Issue.record("forward argument \(String(reflecting: f.sshArgument)) would be split")
            }
            for f in tunnel.forwards {
                for case .tcp(let host?, _) in [f.listen, f.target].compactMap({ $0 }) where host.hasPrefix("-") {
                    Issue.record("forward \(String(reflecting: f.sshArgument)) has a host starting with '-'")
                }
            }
            if config.hosts[tunnel.host] == nil { #expect(Validation.hostProblem(tunnel.host) == nil) }
        }
    }

    /// One to four edits: insert, delete or replace a piece, duplicate/drop/swap a line, or change a value's type.
    static func mutate(_ base: String, rng: inout FuzzRandom) -> String {
        var text = base
        for _ in 0..<rng.int(1...4) {
            var scalars = Array(text.unicodeScalars)
            let at = rng.int(0...scalars.count)
            let piece = Array(rng.pick(pieces).unicodeScalars)
            switch rng.int(0...6) {
            case 0: scalars.insert(contentsOf: piece, at: at)
            case 1 where at < scalars.count: scalars.removeSubrange(at..<min(scalars.count, at + rng.int(1...8)))
            case 2: scalars.replaceSubrange(at..<min(at + rng.int(1...3), scalars.count), with: piece)
            default:
                var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                guard !lines.isEmpty else { break }
                let l = rng.int(0...(lines.count - 1))
                switch rng.int(0...3) {
                case 0: lines.insert(lines[l], at: rng.int(0...lines.count))
                case 1: lines.remove(at: l)
                case 2: lines.swapAt(l, rng.int(0...(lines.count - 1)))
                default:
                    // Replace the value after '=' with another kind of value.
                    if let eq = lines[l].firstIndex(of: "=") {
                        lines[l] = String(lines[l][...eq]) + " " + rng.pick(["1", "true", "[]", "{}", "\"\"", "\"-x\"", "'a\\nb'",
                                                                           "\"a\\nProxyCommand sh\"", "[\"1:h:1\", 2]", "1.5",
                                                                           "{ ProxyCommand = \"sh\" }", "\"../../x\""])
                    }
                }
                text = lines.joined(separator: "\n")
                continue
            }
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars)
            text = String(view)
        }
        return text
    }

    // MARK: forward specs

    @Test func mutatedForwardSpecsAreParsedOrRejectedWithAReason() throws {
        var rng = FuzzRandom(seed: Self.seed ^ 0x5bec)
        let seeds = ForwardSpecTests.forms.map { ($0.input, $0.kind) } + [("8080:wiki.lan:80", .local), ("1080", .dynamic), ("0:localhost:22", .remote)]
        var accepted = 0, slowest: Duration = .zero
        try boundedTime("forward spec mutations") { current in
            for i in 0..<Self.cases {
                let (base, baseKind) = rng.pick(seeds)
                let kind = rng.chance(80) ? baseKind : rng.pick(ForwardKind.allCases)
                var scalars = Array(base.unicodeScalars)
                for _ in 0..<rng.int(1...3) {
                    let at = rng.int(0...scalars.count)
                    let piece = Array(rng.pick(Self.specPieces).unicodeScalars)
                    switch rng.int(0...3) {
                    case 0: scalars.insert(contentsOf: piece, at: at)
                    case 1 where at < scalars.count: scalars.remove(at: at)
                    case 2: scalars.replaceSubrange(at..<min(at + 1, scalars.count), with: piece)
                    default: scalars = Array((String(String.UnicodeScalarView(scalars)) + String(String.UnicodeScalarView(scalars))).unicodeScalars)
                    }
                }
                let text = String(String.UnicodeScalarView(scalars))
                current.set(text)
                let start = ContinuousClock.now
                do throws(ForwardSpecError) {
                    let spec = try ForwardSpec.parse(text, kind: kind)
                    accepted += 1
                    let again = try ForwardSpec.parse(spec.text, kind: kind)
                    #expect(again == spec, "case \(i): \(String(reflecting: text)) → \(spec.text) → \(again.text)")
                    _ = try ForwardSpec.parse(spec.sshArgument, kind: kind)
                    let unsafe = spec.configLine.contains("\n")
                        || spec.sshArgument.unicodeScalars.contains { $0.value < 0x21 || $0.value == 0x7f || $0 == "#" || $0 == "\"" }
                    #expect(!unsafe, "case \(i): accepted \(String(reflecting: text)) renders as \(String(reflecting: spec.configLine))")
                } catch {
                    #expect(!error.reason.isEmpty && error.spec == text && error.kind == kind, "case \(i): unhelpful error for \(String(reflecting: text))")
                    #expect(error.description.hasPrefix("bad \(kind.flag) forward "))
                }
                slowest = max(slowest, ContinuousClock.now - start)
            }
        }
        print("fwd fuzz: ForwardSpec.parse — \(Self.cases) mutated specs: \(accepted) accepted (and round-tripped), \(Self.cases - accepted) rejected with a reason, slowest \(slowest)")
        #expect(accepted > Self.cases / 50)
    }

    static let specPieces: [String] = [
        "[", "]", ":", ":", ":", "\\", "/", "0", "1", "8080", "65536", "-1", "h", "wiki.lan", "*", "-", ".", "..", "/../",
        "::1", "[::1]", "%eth0", "http", "ssh", " ", "\n", "\t", "#", "$", "é", "\u{301}", "\0", "%", "=", "'", "\"",
        "-oProxyCommand=sh", "localhost", "0.0.0.0", String(repeating: "9", count: 30), String(repeating: "a", count: 260),
    ]

    // MARK: ssh stderr classifier

    @Test func classifierHandlesRandomAndMutatedStderr() throws {
        var rng = FuzzRandom(seed: Self.seed ^ 0xc1a55)
        let needles = SSHFailure.table.map(\.needle)
        let realLines = [
            "ssh: connect to host a.example.com port 22: Connection refused",
            "alice@a.example.com: Permission denied (publickey).",
            "Warning: remote port forwarding failed for listen port 8080",
            "bind [127.0.0.1]:8080: Address already in use",
            "Timeout, server a.example.com not responding.",
            "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @",
            "kex_exchange_identification: read: Connection reset by peer",
            "debug1: Reading configuration data /etc/ssh/ssh_config",
        ]
        var counts: [FailureClass: Int] = [:]
        try boundedTime("classifier") { current in
            for i in 0..<Self.cases {
                var lines: [String] = []
                for _ in 0..<rng.int(0...6) {
                    switch rng.int(0...3) {
                    case 0: lines.append(rng.pick(realLines))
                    case 1: lines.append(String(decoding: (0..<rng.int(0...120)).map { _ in UInt8(rng.int(0...255)) }, as: UTF8.self))
                    case 2:
                        // A needle cut, doubled or buried in noise.
                        var n = rng.pick(needles)
                        if rng.chance(30), n.count > 2 { n.removeLast(rng.int(1...2)) }
                        lines.append(rng.pick(["", "x", "\t", "debug1: "]) + n + rng.pick(["", ".", " for host\r", String(repeating: "z", count: 500)]))
                    default: lines.append(rng.pick(Self.pieces))
                    }
                }
                let stderr = lines.joined(separator: rng.pick(["\n", "\r\n", "\r"]))
                current.set(stderr)
                let status = Int32(rng.int(-1...300))
                let failure = SSHFailure.classify(stderr: stderr, status: status)
                counts[failure.failureClass, default: 0] += 1
                // The first table row any line contains decides; no row: retry.
                let stderrLines = stderr.split(whereSeparator: \.isNewline)
                let expected = SSHFailure.table.first { row in stderrLines.contains { $0.contains(row.needle) } }?.failureClass ?? .retry
                #expect(failure.failureClass == expected, "case \(i): \(String(reflecting: stderr.prefix(300)))")
                #expect(!failure.evidence.isEmpty && failure.evidence.count <= 300 && !failure.evidence.contains(where: \.isNewline),
                        "case \(i): evidence \(String(reflecting: failure.evidence)) for \(String(reflecting: stderr.prefix(300)))")
                #expect(!failure.advice.isEmpty)
                #expect(SSHFailure.classify(stderr: stderr, status: status) == failure, "not deterministic")
            }
        }
        // One very long stderr (a chatty ssh with -v) must still classify at once.
        let huge = String(repeating: "debug1: channel 0: new [client-session]\n", count: 50_000) + "Connection refused\n"
        let start = ContinuousClock.now
        #expect(SSHFailure.classify(stderr: huge, status: 255).failureClass == .retry)
        let hugeTime = ContinuousClock.now - start
        #expect(hugeTime < .seconds(5))
        print("fwd fuzz: SSHFailure.classify — \(Self.cases) random/mutated stderr texts: \(counts.map { "\($0.key.rawValue) \($0.value)" }.sorted().joined(separator: ", ")); 2 MB of stderr in \(hugeTime)")
    }

    // MARK: helpers

    /// The case a fuzz loop is working on, so a hang can name it.
    final class Current: @unchecked Sendable {
        private let lock = NSLock()
        private var text = ""
        func set(_ t: String) { lock.withLock { text = t } }
        var value: String { lock.withLock { text } }
    }

    /// Runs a fuzz loop on a thread of its own and fails (naming the input) if it has not finished in 5 minutes:
    /// an input that makes a parser spin must fail the test, not hang the suite.
    func boundedTime(_ label: String, limit: Double = 300, _ body: @escaping (Current) throws -> Void) throws {
        final class Outcome: @unchecked Sendable { var error: (any Error)? }
        let current = Current(), outcome = Outcome()
        let finished = DispatchSemaphore(value: 0)
        nonisolated(unsafe) let run = body
        let thread = Thread {
            do { try run(current) } catch { outcome.error = error }
            finished.signal()
        }
        thread.stackSize = 16 << 20
        thread.start()
        if finished.wait(timeout: .now() + limit) == .timedOut {
            Issue.record("\(label): no result after \(Int(limit)) s; stuck on \(String(reflecting: current.value.prefix(500)))")
            return
        }
        if let error = outcome.error { throw error }
    }
}

/// xorshift64*, seeded, so a failing case reproduces (FWD_FUZZ_SEED here; fixed seeds in ForwardSpecTests).
struct FuzzRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed == 0 ? 0x2545_f491 : seed }

    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_f491_4f6c_dd1d
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int { range.lowerBound + Int(next() % UInt64(range.count)) }

    mutating func chance(_ percent: Int) -> Bool { int(0...99) < percent }

    mutating func pick<T>(_ items: [T]) -> T { items[int(0...(items.count - 1))] }
}

/// Option keys and values from a hostile alphabet, and jump hops: whatever validation accepts is rendered with
/// SSHConfigFiles and read back by the real `ssh -G`, which must show ssh's defaults for every keyword that runs
/// a command or loads code; a connect attempt through each accepted config must not create the canary file.
/// FWD_OPTION_FUZZ_CASES sets the number of generated configs (default 20 000, of which a bounded number are
/// accepted and run through ssh).
@Suite struct OptionFuzzTests {
    static let cases = Int(ProcessInfo.processInfo.environment["FWD_OPTION_FUZZ_CASES"] ?? "") ?? 20_000
    static let commandKeywords = ["proxycommand", "localcommand", "knownhostscommand", "remotecommand", "xauthlocation",
                                  "pkcs11provider", "securitykeyprovider", "permitlocalcommand", "proxyjump"]

    @Test func noAcceptedOptionLetsSSHRunACommand() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-optfuzz-\(UUID().uuidString.prefix(8))").path
        try FileSystem.makePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let canary = dir + "/canary"
        let paths = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir + "/state", userSSHConfig: dir + "/none", controlDirectory: dir + "/c")
        let pieces = ["|", ">", "<", ";", "&", "$", "(", ")", "`", "'", "\"", "*", "?", "%", "%k", "%h", "%d", "${HOME}", "\\", "#", "=",
                      " ", "  ", "\t", "\n", "\r", ",", "+", "-", "^", "@", ":", ".", "/", "~", "!", "{", "}", "[", "]",
                      "touch \(canary)", "$(touch \(canary))", "`touch \(canary)`", "sh -c", "yes", "no", "ask", "22", "0",
                      "aes128-ctr", "LC_*", "af21", "1G", "lab", "fe80::1%eth0", "a.example.com", "\u{7f}", "é"]
        let keys = Validation.allowedOptions.values.map(\.keyword) + Validation.refusedOptions.keys.map { $0 } + ["Frobnicate", "Proxy Command", "PROXYCOMMAND"]
        var rng = FuzzRandom(seed: FuzzTests.seed ^ 0x0971)
        var accepted: [(config: FwdConfig, source: String)] = []
        var rejected = 0
        for _ in 0..<Self.cases where accepted.count < 250 {
            let key = rng.pick(keys)
            let value = (0..<(rng.chance(50) ? 1 : rng.int(2...4))).map { _ in rng.pick(pieces) }.joined()
            let jump = rng.chance(20) ? (0..<rng.int(1...3)).map { _ in rng.pick(pieces) }.joined() : nil
            func toml(_ s: String) -> String {
                "\"" + s.unicodeScalars.map { c -> String in
                    switch c {
                    case "\"": return "\\\""
                    case "\\": return "\\\\"
                    case _ where c.value < 0x20 || c.value == 0x7f: return String(format: "\\u%04X", c.value)
                    default: return String(c)
                    }
                }.joined() + "\""
            }
            let source = "[hosts.office]\nhostname = \"127.0.0.1\"\nport = 1\n" + (jump.map { "jump = \(toml($0))\n" } ?? "")
                + "options = { \(toml(key)) = \(toml(value)) }\n[tunnels.t]\nhost = \"office\"\nlocal = \"1:127.0.0.1:1\"\n"
            if let config = try? ConfigLoader.parse(source, path: paths.config) { accepted.append((config, source)) } else { rejected += 1 }
        }
        let defaults = try await SSHResolver.resolve(Destination(host: "office"), paths: paths, config: "none")
        var connects = 0, refusedBySSH = 0
        let start = ContinuousClock.now
        for (i, item) in accepted.enumerated() {
            let file = "\(dir)/case-\(i)"
            try FileSystem.writeAtomically(SSHConfigFiles.fragment(item.config, paths: paths, resolved: [:]), to: file)
            for host in ["office", "t"] {
                let r: ResolvedHost
                do {
                    r = try await SSHResolver.resolve(Destination(host: host), paths: paths, config: file)
                } catch {
                    // Well-formed but not a value this ssh knows (an unknown cipher): ssh refuses the whole
                    // file, which runs nothing either.
                    refusedBySSH += 1
                    continue
                }
                for keyword in Self.commandKeywords where keyword != "proxyjump" || item.config.hosts["office"]?.jump == nil {
                    #expect(r.value(keyword) == defaults.value(keyword), "\(keyword) \(r.value(keyword) ?? "") from \(String(reflecting: item.source))")
                }
            }
            // A bounded number of real connection attempts (port 1 refuses; a jump's own ssh fails to resolve).
            if i % 5 == 0 {
                connects += 1
                let attempt = SSHCommand(executable: paths.ssh, arguments: ["-F", file, "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "office", "true"])
                _ = try? await CommandRunner.run(attempt, timeout: .seconds(10))
            }
            #expect(!FileSystem.exists(canary), "a command ran from \(String(reflecting: item.source))")
        }
        print("fwd fuzz: options — \(accepted.count) accepted and checked with ssh -G (\(connects) connect attempts, \(refusedBySSH) host lookups refused by ssh as unknown values), \(rejected) rejected, \(ContinuousClock.now - start)")
        #expect(accepted.count >= 50, "too few accepted to mean anything")
        #expect(!FileSystem.exists(canary))
    }
}
