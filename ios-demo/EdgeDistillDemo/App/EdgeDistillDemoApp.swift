import SwiftUI

@main
struct EdgeDistillDemoApp: App {
    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
