plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.edgedistill.demo"
    compileSdk = 35
    defaultConfig {
        applicationId = "dev.edgedistill.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }
    // Models are memory-mapped from the assets: keep them uncompressed.
    androidResources {
        noCompress += listOf("tflite", "ort")
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    implementation(project(":core"))
    // The runtime versions edge-distill-app.json declares ("runtimes"): bundle proves every artifact
    // loads in exactly these (tests/test_app_runtimes.py keeps the two in step).
    implementation("com.google.ai.edge.litert:litert:2.3.0")
    implementation("com.microsoft.onnxruntime:onnxruntime-android:1.32.0")
}
