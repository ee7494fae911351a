"""Small, real-looking source files written at test time: the shapes people actually bring.

Each writer returns the path it wrote. The contents mimic what the tools produce (a saved page with
navigation and scripts, Excel's GBK CSV export, mysqldump and pg_dump output), small enough to keep
the tests fast.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

QA_ZH = [("什么是机器学习？", "机器学习是人工智能的一个分支，让计算机从数据中学习规律。"),
         ("北京是哪个国家的首都？", "北京是中华人民共和国的首都。"),
         ("如何泡一杯绿茶？", "用八十度左右的水冲泡，浸泡两到三分钟即可。")]
QA_EN = [("How do I reset my password?", "Open Settings, choose Account, then click 'Reset password'."),
         ("Can I export my data?", "Yes: Settings > Privacy > Export gives you a ZIP of everything."),
         ("Is there a dark mode?", "Yes, switch it on under Settings > Appearance.")]


def saved_web_page(path: Path) -> Path:
    """A page as a browser saves it: head with styles and scripts, site chrome around the article."""
    path.write_text("""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Brewing green tea | Tea Guide</title>
  <link rel="stylesheet" href="site.css">
  <style>body { font-family: sans-serif } .ad { display: none }</style>
  <script>window.dataLayer = [{"event": "pageview", "secret": "TRACKING-CODE"}];</script>
</head>
<body class="no-sidebar">
  <header class="site-header"><a href="/" class="logo">Tea Guide</a><span>Sign in</span></header>
  <nav class="main-nav"><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop</a></li><li>About us</li></ul></nav>
  <div class="breadcrumb">Home &gt; Guides &gt; Green tea</div>
  <main>
    <article>
      <h1>Brewing green tea</h1>
      <p>Green tea tastes best when the water is <b>not boiling</b>: about 80&nbsp;°C.<br>Let it steep for two minutes.</p>
      <ul><li>Use 2 g of leaves per cup.</li><li>Rinse the pot with hot water first.</li></ul>
      <section class="faq">
        <div class="qa"><h3 class="q">Why not boiling water?</h3><p class="a">It scalds the leaves &amp; makes the tea bitter.</p></div>
        <div class="qa"><h3 class="q">Can I steep the leaves twice?</h3><p class="a">Yes, good leaves give two or three infusions.</p></div>
        <div class="qa"><h3 class="q">Does green tea contain caffeine?</h3><p class="a">Yes, roughly a third of what coffee has.</p></div>
      </section>
    </article>
  </main>
  <aside class="related">Related: Oolong, Black tea</aside>
  <div id="cookie-banner">We use cookies. <button>OK</button></div>
  <footer>&copy; 2024 Tea Guide · <a href="/privacy">Privacy</a></footer>
  <script src="analytics.js"></script><script>trackPage("green-tea");</script>
  <noscript>Enable JavaScript</noscript>
</body>
</html>
""", encoding="utf-8")
    return path


def gbk_csv(path: Path) -> Path:
    """What Excel on a Chinese Windows writes by "Save as CSV": GBK bytes, CRLF line ends."""
    lines = ["问题,答案"] + [f"{q},{a}" for q, a in QA_ZH]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    return path


def bom_csv(path: Path) -> Path:
    """Excel's "CSV UTF-8": a BOM, a quoted field with a comma and a line break, one row with a stray extra field."""
    text = ("question,answer\n"
            f'"{QA_EN[0][0]}","{QA_EN[0][1]}"\n'
            f'"{QA_EN[1][0]}","{QA_EN[1][1]}"\n'
            '"Two lines, one answer?","First line,\nsecond line."\n'
            'Broken row,has,three fields\n'
            f'"{QA_EN[2][0]}","{QA_EN[2][1]}"\n')
    path.write_bytes("\ufeff".encode("utf-8") + text.encode("utf-8"))
    return path


def xlsx(path: Path) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "FAQ"
    ws.append(["Frage", "Antwort", "Kategorie"])
    ws.append(["Wie spät ist es?", "Schau auf die Uhr.", "allgemein"])
    ws.append([None, None, None])  # an empty line in the sheet
    ws.append(["Wie viel ist 6 mal 7?", 42, "mathe"])
    ws.append(["Was ist die Hauptstadt von Frankreich?", "Paris.", "geo"])
    notes = wb.create_sheet("Notes")
    notes.append(["not", "data"])
    wb.save(path)
    return path


def mysql_dump(path: Path) -> Path:
    """mysqldump output: comments, conditional comments, backticks, LOCK TABLES, extended INSERTs with escapes."""
    path.write_text(r"""-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)
--
-- Host: localhost    Database: helpdesk
-- ------------------------------------------------------
-- Server version	8.0.36

/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!50503 SET NAMES utf8mb4 */;
/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */;

--
-- Table structure for table `tickets`
--

DROP TABLE IF EXISTS `tickets`;
/*!40101 SET @saved_cs_client     = @@character_set_client */;
/*!50503 SET character_set_client = utf8mb4 */;
CREATE TABLE `tickets` (
  `id` int NOT NULL AUTO_INCREMENT,
  `question` text COLLATE utf8mb4_unicode_ci NOT NULL,
  `answer` text COLLATE utf8mb4_unicode_ci,
  `rating` decimal(3,1) DEFAULT NULL,
  `created` datetime DEFAULT CURRENT_TIMESTAMP,
  PRIMARY KEY (`id`),
  KEY `idx_rating` (`rating`)
) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
/*!40101 SET character_set_client = @saved_cs_client */;

--
-- Dumping data for table `tickets`
--

LOCK TABLES `tickets` WRITE;
/*!40000 ALTER TABLE `tickets` DISABLE KEYS */;
INSERT INTO `tickets` VALUES (1,'Where\'s my invoice?','Under Billing; it\'s the \"Invoices\" tab.\nDownload it as PDF.',4.5,'2024-01-02 10:00:00'),(2,'Which folder?','Use C:\\Users\\you\\Downloads\\',NULL,'2024-01-03 11:00:00'),(3,'It''s slow','Clear the cache; then restart.',-1.0,'2024-01-04 12:00:00'),(4,'怎么退款？','在订单页面点击“申请退款”。',5.0,'2024-01-05 13:00:00');
INSERT INTO `tickets` (`id`, `question`, `answer`, `rating`, `created`) VALUES (5,'Two
lines?','Yes, two.',3.0,NOW());
/*!40000 ALTER TABLE `tickets` ENABLE KEYS */;
UNLOCK TABLES;

--
-- Table structure for table `users`
--

DROP TABLE IF EXISTS `users`;
CREATE TABLE `users` (
  `id` int NOT NULL,
  `email` varchar(255) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
LOCK TABLES `users` WRITE;
INSERT INTO `users` VALUES (1,'a@example.com'),(2,'b@example.com');
UNLOCK TABLES;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;

-- Dump completed on 2024-06-01 12:00:00
""", encoding="utf-8")
    return path


def pg_dump(path: Path) -> Path:
    """pg_dump --format=plain: SET lines, CREATE TABLE public.x, a COPY block, and INSERTs (--inserts style)."""
    path.write_text(r"""--
-- PostgreSQL database dump
--

-- Dumped from database version 16.2
-- Dumped by pg_dump version 16.2

SET statement_timeout = 0;
SET lock_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

SET default_tablespace = '';

--
-- Name: qa; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.qa (
    id integer NOT NULL,
    prompt text NOT NULL,
    "response" text,
    CONSTRAINT qa_pkey PRIMARY KEY (id)
);


ALTER TABLE public.qa OWNER TO app;

--
-- Data for Name: qa; Type: TABLE DATA; Schema: public; Owner: app
--

COPY public.qa (id, prompt, response) FROM stdin;
1	What is a tab?	A character:\there it is.
2	Where is the temp folder?	C:\\Temp on Windows
3	Unanswered question	\N
4	多行回答？	第一行\n第二行
\.


INSERT INTO "public"."qa" ("id", "prompt", "response") VALUES (5, 'It''s standard SQL', 'A path: C:\temp\');
INSERT INTO public.qa VALUES (6, E'Escaped\ttab', 'x'::text);

--
-- PostgreSQL database dump complete
--
""", encoding="utf-8")
    return path


def sqlite_db(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE faq (id INTEGER PRIMARY KEY, q TEXT NOT NULL, a TEXT, published INTEGER);
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT);
    """)
    con.executemany("INSERT INTO faq (q, a, published) VALUES (?, ?, ?)",
                    [(q, a, 1) for q, a in QA_EN] + [("Draft question", "Draft answer", 0)])
    con.execute("INSERT INTO authors (name) VALUES ('Ann')")
    con.commit()
    con.close()
    return path


def parquet(path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in QA_EN + QA_ZH]
    pq.write_table(pa.table({"messages": convs, "lang": ["en"] * 3 + ["zh"] * 3}), path)
    return path
