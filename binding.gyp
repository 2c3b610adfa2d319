{
  "targets": [
    {
      "target_name": "weft_native",
      "sources": ["native/weft_native.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags!": ["-O3"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
