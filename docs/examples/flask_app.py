from flask import Flask, request
import sqlite3

app = Flask(__name__)

@app.route("/user")
def user():
    name = request.args["name"]
    db = sqlite3.connect("app.db")
    rows = db.execute("SELECT * FROM users WHERE name = '" + name + "'").fetchall()
    return {"rows": rows}
