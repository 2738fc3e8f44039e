package dev.edgedistill.core

/** A small JSON reader: enough for model.json, with no dependency the app must ship. */
object Json {
    fun parse(text: String): Any? {
        val reader = Reader(text)
        val value = reader.value()
        reader.skipSpace()
        require(reader.atEnd()) { "trailing characters at ${reader.position}" }
        return value
    }

    private class Reader(
        val text: String,
    ) {
        var position = 0

        fun atEnd() = position >= text.length

        fun skipSpace() {
            while (!atEnd() && text[position].isWhitespace()) position++
        }

        fun value(): Any? {
            skipSpace()
            require(!atEnd()) { "unexpected end of JSON" }
            return when (val c = text[position]) {
                '{' -> objectValue()
                '[' -> arrayValue()
                '"' -> stringValue()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c.isDigit()) numberValue() else error("unexpected '$c' at $position")
            }
        }

        private fun literal(
            word: String,
            result: Any?,
        ): Any? {
            require(text.startsWith(word, position)) { "expected $word at $position" }
            position += word.length
            return result
        }

        private fun objectValue(): Map<String, Any?> {
            val map = LinkedHashMap<String, Any?>()
            position++
            skipSpace()
            if (text[position] == '}') {
                position++
                return map
            }
            while (true) {
                skipSpace()
                val key = stringValue()
                skipSpace()
                require(text[position] == ':') { "expected ':' at $position" }
                position++
                map[key] = value()
                skipSpace()
                when (text[position++]) {
                    ',' -> continue
                    '}' -> return map
                    else -> error("expected ',' or '}' at ${position - 1}")
                }
            }
        }

        private fun arrayValue(): List<Any?> {
            val list = ArrayList<Any?>()
            position++
            skipSpace()
            if (text[position] == ']') {
                position++
                return list
            }
            while (true) {
                list.add(value())
                skipSpace()
                when (text[position++]) {
                    ',' -> continue
                    ']' -> return list
                    else -> error("expected ',' or ']' at ${position - 1}")
                }
            }
        }

        private fun stringValue(): String {
            require(text[position] == '"') { "expected a string at $position" }
            position++
            val out = StringBuilder()
            while (true) {
                val c = text[position++]
                when (c) {
                    '"' -> {
                        return out.toString()
                    }

                    '\\' -> {
                        when (val e = text[position++]) {
                            'n' -> {
                                out.append('\n')
                            }

                            't' -> {
                                out.append('\t')
                            }

                            'r' -> {
                                out.append('\r')
                            }

                            'b' -> {
                                out.append('\b')
                            }

                            'f' -> {
                                out.append('\u000c')
                            }

                            'u' -> {
                                out.append(text.substring(position, position + 4).toInt(16).toChar())
                                position += 4
                            }

                            else -> {
                                out.append(e)
                            }
                        }
                    }

                    else -> {
                        out.append(c)
                    }
                }
            }
        }

        private fun numberValue(): Double {
            val start = position
            while (!atEnd() && (text[position].isDigit() || text[position] in "+-.eE")) position++
            return text.substring(start, position).toDouble()
        }
    }
}
