import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// Servers and clients from Debian packages, for the tests that run the client a person would use.
/// A test whose tools are missing prints what to install and passes without running (never silently).
enum RealTools {
    /// Debian's python3, not whatever `python3` comes first on PATH (pyenv shims have no Debian modules).
    static let python = "/usr/bin/python3"

    /// The missing ones of `paths` (executables), or of Python modules written `python3:MODULE`.
    static func missing(_ tools: [(need: String, package: String)]) -> [String] {
        tools.filter { tool in
            if tool.need.hasPrefix("python3:") {
                let module = String(tool.need.dropFirst("python3:".count))
                return (try? ChildProcess.run([python, "-c", "import \(module)"]).exit) != .exited(0)
            }
            return !FileManager.default.isExecutableFile(atPath: tool.need)
        }.map(\.package)
    }

    /// Prints a skip message and returns false when something is missing.
    static func available(_ test: String, _ tools: [(need: String, package: String)]) -> Bool {
        let missing = missing(tools)
        guard missing.isEmpty else {
            print("skipped \(test): needs \(Set(missing).sorted().joined(separator: ", ")) (apt-get install \(Set(missing).sorted().joined(separator: " ")); .ci/run installs them)")
            return false
        }
        return true
    }

    /// The bin directory of Debian's newest PostgreSQL (`/usr/lib/postgresql/N/bin`).
    static var postgresBin: String? {
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "/usr/lib/postgresql/\($0)/bin" }
    }
}

/// A run of consecutive TCP ports free on every loopback address, below Linux's ephemeral range
/// (32768–60999) so no outgoing connection takes one meanwhile. Racy by nature, fine for tests.
enum PortRange {
    static func free(count: Int) throws -> ClosedRange<Int> {
        for _ in 0..<200 {
            let low = Int.random(in: 20_000...(32_000 - count))
            let range = low...(low + count - 1)
            if range.allSatisfy(isFree) { return range }
        }
        throw ChildProcessError(description: "no \(count) consecutive free ports found between 20000 and 32000")
    }

    /// Nothing listens on *:port (bind with SO_REUSEADDR, as fwd's own pre-check does).
    static func isFree(_ port: Int) -> Bool {
        do {
            _ = try TCPListener.listen(host: "0.0.0.0", port: port, backlog: 1)
            return true
        } catch {
            return false
        }
    }
}

/// A directory that an unprivileged user can own: PostgreSQL and MariaDB refuse to run as root, so as root
/// the servers run as `nobody` (through runuser) in a directory outside the root-only fixture directory.
final class ServerDirectory: @unchecked Sendable {
    let path: String
    let user: String?

    init(prefix: String) throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ChildProcessError(description: "mkdtemp: \(String(cString: strerror(errno)))") }
        path = String(cString: made)
        user = geteuid() == 0 ? "nobody" : nil
        if let user, let pw = getpwnam(user) {
            chown(path, pw.pointee.pw_uid, pw.pointee.pw_gid)
        }
    }

    /// argv run as the unprivileged user when we are root.
    func asUser(_ argv: [String]) -> [String] {
        guard let user else { return argv }
        return ["/usr/sbin/runuser", "-u", user, "--"] + argv
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
