import ArgumentParser

/// The tunnels a verb acts on and how long it waits for them, as `up`, `down` and `reconnect` take them: tunnel or
/// group names, `--all` where the verb has it, `--timeout` and `-q/--quiet`. The words and defaults that differ from
/// verb to verb come from the verb (`SelectsTunnels`), so each one's help and completions read as before.
struct TunnelSelection<Verb: SelectsTunnels>: ParsableArguments {
    @Argument var names: [String]

    @OptionGroup var scope: Verb.Scope

    @Option(help: ArgumentHelp(Verb.timeout.help))
    var timeout: Double = Verb.timeout.seconds

    @Flag(name: .shortAndLong, help: "Print nothing on success.")
    var quiet = false

    init() {
        let help = ArgumentHelp("Tunnel or group names, or shell-style patterns (quoted: 'db-*').")
        // A verb with --all may be given no names; one without needs at least one.
        _names = Verb.Scope.offersAll
            ? Argument(wrappedValue: [], help: help, completion: Verb.nameCompletion)
            : Argument(help: help, completion: Verb.nameCompletion)
    }

    /// `--all` was given (never, for a verb without it).
    var all: Bool { scope.all }

    func validate() throws {
        guard Verb.Scope.offersAll else { return }
        // No names and no --all: an error, or for a verb that lists what it could act on, that list.
        if names.isEmpty == !all && !(names.isEmpty && Verb.listsWhenEmpty) {
            throw ValidationError("name tunnels or groups, or give --all")
        }
    }
}

/// A verb that takes a `TunnelSelection`, and what differs in it from verb to verb.
protocol SelectsTunnels {
    /// `NamesOnly`, or `NamesOrAll<Self>` for a verb with `--all`.
    associatedtype Scope: SelectionScope
    /// The candidates TAB offers for the names.
    static var nameCompletion: CompletionKind { get }
    /// `--timeout`'s default and help.
    static var timeout: (seconds: Double, help: String) { get }
    /// Given neither names nor `--all`, the verb runs and lists the tunnels and groups (`fwd up`).
    static var listsWhenEmpty: Bool { get }
}

extension SelectsTunnels {
    static var nameCompletion: CompletionKind { Completions.tunnelsAndGroups }
    static var listsWhenEmpty: Bool { false }
}

/// A verb that can act on every tunnel with `--all`, and that flag's help.
protocol SelectsAllTunnels: SelectsTunnels {
    static var allHelp: String { get }
}

/// Whether a selection can be `--all` instead of names.
protocol SelectionScope: ParsableArguments {
    static var offersAll: Bool { get }
    var all: Bool { get }
}

/// Names only: no `--all`.
struct NamesOnly: SelectionScope {
    static var offersAll: Bool { false }
    var all: Bool { false }
}

/// Names, or `--all`.
struct NamesOrAll<Verb: SelectsAllTunnels>: SelectionScope {
    static var offersAll: Bool { true }

    @Flag(help: ArgumentHelp(Verb.allHelp))
    var all = false
}
