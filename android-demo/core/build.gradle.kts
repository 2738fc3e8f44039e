// The pure-Kotlin core: model.json, preprocessing, decoding, latency statistics. No Android API,
// so CI compiles and tests it with a plain Kotlin compiler.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
}
