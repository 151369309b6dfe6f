import Foundation

/// The login questions of one master run: from its `AskpassRelay` to the `LoginBroker`, each answer back to the
/// relay (so to the ssh that asked, and nowhere else), and what became of each question to the host's machine as
/// an event. A question nobody can answer, or one the person cancels, is refused by ending that ssh: ssh would
/// read a failed askpass as an empty answer and send it to the server.
enum LoginSession {
    static func start(relay: AskpassRelay, broker: LoginBroker, host: String, generation g: Int,
                      tunnels: @escaping @Sendable () async -> Set<String>,
                      report: @escaping @Sendable (HostMachine.Event) -> Void) {
        Task {
            var questions: [Int: Int] = [:]  // relay prompt id → broker question id
            for await event in relay.events {
                switch event {
                case .prompt(let prompt):
                    // A notice ("confirm user presence") needs no answer; ssh ends its askpass itself.
                    if prompt.hint == .notice { continue }
                    let kind = prompt.kind
                    questions[prompt.id] = broker.ask(prompt, host: host, tunnels: await tunnels()) { outcome in
                        switch outcome {
                        case .asked:
                            report(.loginAsked(generation: g, kind))
                        case .answer(let answer):
                            do {
                                try relay.answer(prompt.id, with: answer)
                            } catch {
                                report(.loginCancelled(generation: g))
                                relay.cancel(prompt.id)
                            }
                        case .cancelled:
                            // Reported before the ssh ends, so its exit reads as the cancel it is.
                            report(.loginCancelled(generation: g))
                            relay.cancel(prompt.id)
                        case .nobody:
                            report(.loginImpossible(generation: g, kind))
                            relay.cancel(prompt.id)
                        }
                    }
                case .withdrawn(let id):
                    if let question = questions.removeValue(forKey: id) { broker.withdraw(question) }
                }
            }
        }
    }
}
