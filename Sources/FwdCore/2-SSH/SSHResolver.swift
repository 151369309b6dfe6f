/// How ssh would connect to a destination, as printed by `ssh -G`.
package struct ResolvedHost: Sendable, Equatable {
    /// `ssh -G` lines as (lowercase keyword, value), in ssh's order; repeated keywords (identityfile) repeat.
    package var lines: [(key: String, value: String)]

    package init(lines: [(key: String, value: String)]) { self.lines = lines }

    package init(parsing output: String) {
        lines = output.split(whereSeparator: \.isNewline).compactMap { line in
            guard let space = line.firstIndex(of: " ") else { return nil }
            return (line[..<space].lowercased(), String(line[line.index(after: space)...]))
        }
    }

    package func value(_ key: String) -> String? { lines.first { $0.key == key }?.value }
    package func values(_ key: String) -> [String] { lines.filter { $0.key == key }.map(\.value) }

    package static func == (a: ResolvedHost, b: ResolvedHost) -> Bool {
        a.lines.map { "\($0.key) \($0.value)" } == b.lines.map { "\($0.key) \($0.value)" }
    }
}

package enum SSHResolveError: Error, Sendable, CustomStringConvertible {
    case failed(destination: String, failure: SSHFailure)
    case launch(String)

    package var description: String {
        switch self {
        case .failed(let destination, let failure):
            return "ssh cannot resolve \"\(destination)\": \(failure)"
        case .launch(let reason):
            return "cannot run ssh: \(reason); install the OpenSSH client (apt-get install openssh-client)"
        }
    }
}

package enum SSHResolver {
    /// Runs `ssh -G` with fwd's root config (or `config`), so the user's own ssh_config applies.
    package static func resolve(_ destination: Destination, paths: FwdPaths, config: String? = nil) async throws(SSHResolveError) -> ResolvedHost {
        let command = SSHCommand.resolve(ssh: paths.ssh, config: config ?? paths.rootSSHConfig, destination: destination)
        let result: CommandResult
        do {
            result = try await CommandRunner.run(command)
        } catch {
            throw .launch("\(error)")
        }
        guard result.status == 0 else {
            throw .failed(destination: destination.host, failure: SSHFailure.classify(stderr: result.stderr, status: result.status))
        }
        return ResolvedHost(parsing: result.stdout)
    }
}
