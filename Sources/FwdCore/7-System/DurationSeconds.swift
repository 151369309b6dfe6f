extension Duration {
    /// The duration in seconds, as the store and the state machine count time.
    package var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
